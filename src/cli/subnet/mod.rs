//! `aws-eni-ip subnet check|reserve`: is a pod range safe from DHCP, and reserve it when it is.
//! Runs where an operator has AWS credentials (env, profile, SSO), never on the node's behalf.

pub mod range;

use crate::cloud::aws::AwsEc2;
use crate::cloud::retry::RetryPolicy;
use crate::cloud::subnet::{CidrReservation, SubnetEc2};
use crate::cloud::CloudError;
use ipnetwork::IpNetwork;
use range::{analyse, RangeReport};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: aws-eni-ip subnet check   --subnet SUBNET --cidr CIDR [--region R] [--json]
       aws-eni-ip subnet reserve --subnet SUBNET --cidr CIDR [--description TEXT] [--region R] [--json]

check (read-only) lists what in CIDR is in use (ENI primary IPs: DHCP collisions; secondary IPs),
the subnet CIDR reservations that overlap it, and how many addresses are free. Exit 0 when no ENI
primary IP lies in CIDR, 1 when one does or a call failed, 2 on bad arguments.

reserve creates an explicit subnet CIDR reservation for CIDR, so EC2's DHCP never hands its
addresses to an ENI. It does nothing when explicit reservations already cover CIDR, and refuses
(exit 1), naming each ENI and instance, when CIDR holds an ENI primary IP or overlaps another
reservation.

Credentials and region: the standard AWS chain (AWS_* variables, AWS_PROFILE and ~/.aws files,
SSO profiles after `aws sso login`, web identity, instance profile); --region overrides.
IAM: ec2:DescribeSubnets, ec2:DescribeNetworkInterfaces, ec2:GetSubnetCidrReservations, and for
reserve ec2:CreateSubnetCidrReservation.";

/// How long all calls of one command may take, retries of throttling included.
const DEADLINE: Duration = Duration::from_secs(60);

struct Args {
    reserve: bool,
    subnet: String,
    cidr: IpNetwork,
    description: String,
    region: Option<String>,
    json: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let reserve = match args.first().map(String::as_str) {
        Some("check") => false,
        Some("reserve") => true,
        Some("-h" | "--help") => return Ok(None),
        Some(other) => return Err(format!("unknown subcommand {other:?}")),
        None => return Err("check or reserve expected".into()),
    };
    let (mut subnet, mut cidr, mut region) = (None, None, None);
    let mut description = String::from("aws-eni-ip: Multus pod addresses, assigned explicitly");
    let mut json = false;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--subnet" => subnet = Some(value()?),
            "--cidr" => {
                let v = value()?;
                let n: IpNetwork = v
                    .parse()
                    .map_err(|_| format!("--cidr {v:?} is not a CIDR (e.g. 10.10.1.128/25)"))?;
                if n.network() != n.ip() {
                    return Err(format!(
                        "--cidr {v} has host bits set; did you mean {}/{}?",
                        n.network(),
                        n.prefix()
                    ));
                }
                cidr = Some(n);
            }
            "--description" => description = value()?,
            "--region" => region = Some(value()?),
            "--json" => json = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args {
        reserve,
        subnet: subnet.ok_or("--subnet is required")?,
        cidr: cidr.ok_or("--cidr is required")?,
        description,
        region,
        json,
    }))
}

/// What the command did, in `--json` and in the exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "camelCase",
    tag = "outcome"
)]
pub enum Outcome {
    /// check: no ENI primary IP in the range.
    Clear,
    /// check or reserve: ENI primary IPs in the range.
    Collision,
    /// reserve: explicit reservations covered the range already.
    AlreadyReserved,
    /// reserve: the range overlaps a reservation that does not cover it, or a prefix one.
    OverlapsReservation {
        reservation_id: String,
    },
    Reserved {
        reservation: CidrReservation,
    },
}

#[derive(Serialize)]
struct Reply<'a> {
    #[serde(flatten)]
    outcome: &'a Outcome,
    #[serde(flatten)]
    report: &'a RangeReport,
}

/// The check, and for `reserve` the reservation, against any [`SubnetEc2`].
pub async fn execute(
    ec2: &impl SubnetEc2,
    subnet_id: &str,
    cidr: IpNetwork,
    reserve: Option<&str>,
) -> Result<(RangeReport, Outcome), String> {
    let subnet = ec2
        .subnet(subnet_id)
        .await
        .map_err(|e| cloud(subnet_id, e))?;
    let (enis, reservations) = tokio::join!(ec2.interfaces(subnet_id), ec2.reservations(subnet_id));
    let enis = enis.map_err(|e| cloud(subnet_id, e))?;
    let reservations = reservations.map_err(|e| cloud(subnet_id, e))?;
    let report = analyse(subnet, cidr, &enis, &reservations).map_err(|e| e.to_string())?;
    let Some(description) = reserve else {
        let outcome = match report.collisions().next() {
            Some(_) => Outcome::Collision,
            None => Outcome::Clear,
        };
        return Ok((report, outcome));
    };
    let outcome = if report.explicitly_reserved {
        Outcome::AlreadyReserved
    } else if report.collisions().next().is_some() {
        Outcome::Collision
    } else if let Some(o) = report.reservations.first() {
        Outcome::OverlapsReservation {
            reservation_id: o.reservation.reservation_id.clone(),
        }
    } else {
        let reservation = ec2
            .reserve_explicit(subnet_id, cidr, description)
            .await
            .map_err(|e| cloud(subnet_id, e))?;
        Outcome::Reserved { reservation }
    };
    Ok((report, outcome))
}

fn cloud(subnet_id: &str, e: CloudError) -> String {
    let hint = match e.api_code() {
        Some("UnauthorizedOperation" | "AuthFailure") => {
            "; the credentials lack an IAM action this command needs (see --help)"
        }
        Some("InvalidSubnetID.NotFound") => "; check the subnet id and --region",
        _ => "",
    };
    format!("subnet {subnet_id}: {e}{hint}")
}

pub fn run(args: &[String]) -> ExitCode {
    let args = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("aws-eni-ip subnet: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aws-eni-ip subnet: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let policy = RetryPolicy::new(Instant::now() + DEADLINE);
        let ec2 = AwsEc2::from_standard_chain(args.region.as_deref(), policy).await;
        let reserve = args.reserve.then_some(args.description.as_str());
        execute(&ec2, &args.subnet, args.cidr, reserve).await
    });
    let (report, outcome) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aws-eni-ip subnet: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        let reply = Reply {
            outcome: &outcome,
            report: &report,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        print!("{}", human(&report, &outcome));
    }
    match outcome {
        Outcome::Clear | Outcome::AlreadyReserved | Outcome::Reserved { .. } => ExitCode::SUCCESS,
        Outcome::Collision | Outcome::OverlapsReservation { .. } => ExitCode::from(1),
    }
}

fn owner(instance: &Option<String>) -> String {
    instance
        .as_deref()
        .map_or_else(|| "not attached".into(), |i| format!("on {i}"))
}

/// The report as an operator reads it.
pub fn human(r: &RangeReport, outcome: &Outcome) -> String {
    let s = &r.subnet;
    let mut out = format!(
        "subnet {} ({}, {}, {}), range {}\n  addresses: {} usable, {} in use, {} free\n",
        s.subnet_id,
        s.ipv4_cidr,
        s.availability_zone,
        s.vpc_id,
        r.cidr,
        r.usable,
        r.in_use.len(),
        r.free
    );
    if r.reservations.is_empty() {
        out.push_str("  reservations: none overlap the range\n");
    }
    for o in &r.reservations {
        let res = &o.reservation;
        out.push_str(&format!(
            "  reservation {} {} {} ({})\n",
            res.reservation_id,
            res.reservation_type,
            res.cidr,
            if o.covers_range {
                "covers the range"
            } else {
                "covers part of it"
            }
        ));
    }
    for u in &r.in_use {
        let what = if u.primary {
            "primary IP (DHCP collision)"
        } else {
            "secondary IP"
        };
        out.push_str(&format!(
            "  in use: {} {what} of {} {}\n",
            u.address,
            u.eni_id,
            owner(&u.instance_id)
        ));
    }
    let verdict = match outcome {
        Outcome::Clear if r.explicitly_reserved => {
            "clear: no ENI primary IP in the range, and explicit reservations cover it".to_string()
        }
        Outcome::Clear => "clear: no ENI primary IP in the range; it is not reserved, so DHCP may still hand one out (run reserve)".to_string(),
        Outcome::AlreadyReserved => "already reserved: nothing to do".to_string(),
        Outcome::Reserved { reservation } => format!(
            "reserved: {} explicit {}; DHCP will not hand out these addresses",
            reservation.reservation_id, reservation.cidr
        ),
        Outcome::Collision => {
            let names: Vec<String> = r
                .collisions()
                .map(|u| format!("{} ({} {})", u.address, u.eni_id, owner(&u.instance_id)))
                .collect();
            format!(
                "collision: ENI primary IPs in the range: {}. A reservation cannot move them; replace those ENIs (or their nodes) or pick another range",
                names.join(", ")
            )
        }
        Outcome::OverlapsReservation { reservation_id } => format!(
            "refused: the range overlaps reservation {reservation_id} without being covered by explicit ones; EC2 refuses overlapping reservations: pick a range that matches it or delete it"
        ),
    };
    out.push_str(&format!("  {verdict}\n"));
    out
}
