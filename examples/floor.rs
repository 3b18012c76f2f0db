//! The floor for `make bench`: one signed AssignPrivateIpAddresses round trip from the smallest Rust
//! process that uses the same SDK as the plugin, then exit.
//!
//! usage: floor EC2_ENDPOINT ENI_ID IPV4 [--imds IMDS_URL]
//!
//! Without `--imds`: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN),
//! region from AWS_REGION. With `--imds`: credentials from the instance profile at IMDS_URL (the path the
//! plugin takes on a node), and the region too unless AWS_REGION is set.

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_sdk_ec2::config::{BehaviorVersion, Region, SharedCredentialsProvider};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (endpoint, eni, ip, imds_url) = match args.as_slice() {
        [e, n, i] => (e, n, i, None),
        [e, n, i, flag, u] if flag == "--imds" => (e, n, i, Some(u)),
        _ => {
            eprintln!("usage: floor EC2_ENDPOINT ENI_ID IPV4 [--imds IMDS_URL]");
            return ExitCode::from(2);
        }
    };
    // The plugin runs a current-thread runtime too.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floor: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(call(endpoint, eni, ip, imds_url.map(String::as_str))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(1)
        }
    }
}

async fn call(endpoint: &str, eni: &str, ip: &str, imds_url: Option<&str>) -> Result<(), String> {
    let env_region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty());
    let (credentials, region) = match imds_url {
        None => (
            SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
            env_region.ok_or("AWS_REGION is not set")?,
        ),
        Some(url) => {
            let client = imds::Client::builder()
                .endpoint(url)
                .map_err(|e| format!("imds endpoint {url}: {e}"))?
                .build();
            let region = match env_region {
                Some(r) => r,
                None => client
                    .get("/latest/meta-data/placement/region")
                    .await
                    .map(String::from)
                    .map_err(|e| format!("region from IMDS: {e}"))?,
            };
            let provider = ImdsCredentialsProvider::builder()
                .imds_client(client)
                .build();
            (SharedCredentialsProvider::new(provider), region)
        }
    };
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_ec2::Client::from_conf(config)
        .assign_private_ip_addresses()
        .network_interface_id(eni)
        .private_ip_addresses(ip)
        .allow_reassignment(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))
}
