//! ENIs that come and go: CreateNetworkInterface, AttachNetworkInterface, DetachNetworkInterface,
//! DeleteNetworkInterface and ModifyNetworkInterfaceAttribute (DeleteOnTermination only).
//!
//! From the SDK model (aws-sdk-ec2 `CreateNetworkInterfaceInput`): "The primary private IPv4
//! address of the network interface. If you don't specify an IPv4 address, Amazon EC2 selects one
//! for you from the subnet's IPv4 CIDR range." (`private_ip_address`); "Unique, case-sensitive
//! identifier that you provide to ensure the idempotency of the request." (`client_token`);
//! `ModifyNetworkInterfaceAttributeInput::attachment`: "If modifying the delete on termination
//! attribute, you must specify the ID of the interface attachment." Error codes are those of the
//! EC2 API reference's error list (`InvalidNetworkInterface.InUse`, `AttachmentLimitExceeded`,
//! `InvalidAttachmentID.NotFound`, `OperationNotPermitted`, `IdempotentParameterMismatch`).

use crate::ec2::{eni_xml, Params};
use crate::engine::{Ec2Error, Engine};
use crate::world::{check_in_subnet, instance_type_limits, is_hex_id};
use crate::EniState;
use std::net::{IpAddr, Ipv4Addr};

type R<T> = Result<T, Ec2Error>;

/// What a ClientToken promised: the request it came with and the ENI it created.
#[derive(Clone, Debug)]
pub(crate) struct Idempotency {
    request: String,
    created: EniState,
}

/// Parameters of CreateNetworkInterface the simulator does not implement: refused, not ignored.
const UNSUPPORTED_CREATE: [&str; 9] = [
    "PrivateIpAddresses",
    "SecondaryPrivateIpAddressCount",
    "Ipv6AddressCount",
    "Ipv6Addresses",
    "Ipv4Prefix",
    "Ipv4PrefixCount",
    "Ipv6Prefix",
    "Ipv6PrefixCount",
    "EnablePrimaryIpv6",
];

fn unsupported(what: &str) -> Ec2Error {
    Ec2Error::new(
        "UnsupportedOperation",
        format!("The simulator does not implement {what}"),
    )
}

fn in_use(eni_id: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidNetworkInterface.InUse",
        format!("Interface: [{eni_id}] in use."),
    )
}

impl Engine {
    fn create_interface(&self, p: &Params) -> R<EniState> {
        let subnet_id = p.require("SubnetId")?;
        for k in UNSUPPORTED_CREATE {
            if p.get(k).is_some() || !p.list(k).is_empty() {
                return Err(unsupported(&format!("CreateNetworkInterface {k}")));
            }
        }
        if let Some(t) = p.get("InterfaceType").filter(|t| *t != "interface") {
            return Err(unsupported(&format!("InterfaceType {t}")));
        }
        let Some(sub) = self.model.subnets.get(subnet_id) else {
            return Err(Ec2Error::new(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{subnet_id}' does not exist"),
            ));
        };
        let groups = p.list("SecurityGroupId");
        for g in &groups {
            if !is_hex_id(g, "sg-") {
                return Err(Ec2Error::new(
                    "InvalidSecurityGroupID.Malformed",
                    format!("Invalid id: \"{g}\" (expecting \"sg-...\")"),
                ));
            }
        }
        let tags = p.tag_specifications("network-interface")?;
        let description = p.get("Description").unwrap_or("").to_string();
        let explicit: Option<Ipv4Addr> = match p.get("PrivateIpAddress") {
            None => None,
            Some(s) => {
                let a = s.parse().map_err(|_| {
                    Ec2Error::invalid(format!(
                        "Value ({s}) for parameter privateIpAddress is invalid. Not a valid IPv4 address."
                    ))
                })?;
                check_in_subnet(sub, subnet_id, IpAddr::V4(a)).map_err(Ec2Error::invalid)?;
                Some(a)
            }
        };
        let request = format!("{subnet_id}|{explicit:?}|{groups:?}|{tags:?}|{description}");
        let mut inner = self.lock();
        let token = p.get("ClientToken").filter(|t| !t.is_empty());
        if let Some(done) = token.and_then(|t| inner.client_tokens.get(t)) {
            if done.request != request {
                return Err(Ec2Error::new(
                    "IdempotentParameterMismatch",
                    "The client token you have provided is associated with a resource that has different parameters",
                ));
            }
            // The same request again: the same ENI, as it is now (as created, if since deleted).
            let id = done.created.id.clone();
            let created = done.created.clone();
            let now = self
                .position(&inner.enis, &id)
                .map(|i| inner.enis[i].clone());
            return Ok(now.unwrap_or(created));
        }
        let enis = inner.enis.clone();
        let primary_ip = match explicit {
            Some(a) => {
                if let Some(holder) = enis
                    .iter()
                    .find(|e| e.primary_ip == a || e.private_ips.contains(&a))
                {
                    return Err(Ec2Error::new(
                        "InvalidIPAddress.InUse",
                        format!(
                            "The specified address is already in use. ({a} is held by {})",
                            holder.id
                        ),
                    ));
                }
                a
            }
            None => match self.auto_pick(&mut inner, &enis, subnet_id, false, 1)?[..] {
                [IpAddr::V4(a)] => a,
                _ => return Err(Ec2Error::new("InternalError", "address picker failed")),
            },
        };
        let (id, mac) = self.fresh_identity(&mut inner.serial, &enis);
        let eni = EniState {
            id,
            mac,
            instance_id: None,
            device_index: None,
            subnet_id: subnet_id.to_string(),
            primary_ip,
            private_ips: Vec::new(),
            ipv6s: Vec::new(),
            tags,
            attachment_id: None,
            delete_on_termination: false,
            description,
            security_groups: groups,
        };
        if let Some(t) = token {
            inner.client_tokens.insert(
                t.to_string(),
                Idempotency {
                    request,
                    created: eni.clone(),
                },
            );
        }
        let mut next = enis.as_ref().clone();
        next.push(eni.clone());
        Self::commit(&mut inner, next);
        Ok(eni)
    }

    /// An ENI id and MAC that no ENI of the world or of this run has had.
    fn fresh_identity(&self, serial: &mut u64, enis: &[EniState]) -> (String, String) {
        loop {
            *serial += 1;
            let n = *serial;
            let id = format!("eni-0f{n:015x}");
            let b = n.to_be_bytes();
            let mac = format!(
                "0e:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[3], b[4], b[5], b[6], b[7]
            );
            let taken = self.model.eni_index.contains_key(&id)
                || self.model.world.enis.iter().any(|e| e.mac == mac)
                || enis.iter().any(|e| e.id == id || e.mac == mac);
            if !taken {
                return (id, mac);
            }
        }
    }

    fn attach_interface(&self, p: &Params) -> R<String> {
        let eni_id = p.require("NetworkInterfaceId")?;
        let instance_id = p.require("InstanceId")?;
        let dev_text = p.require("DeviceIndex")?;
        if p.get("NetworkCardIndex").is_some_and(|c| c != "0") {
            return Err(unsupported("network cards other than 0"));
        }
        let dev: u32 = dev_text.parse().map_err(|_| {
            Ec2Error::invalid(format!(
                "Value ({dev_text}) for parameter deviceIndex is invalid. Expected a non-negative integer."
            ))
        })?;
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        let inst = self.find_instance(instance_id)?;
        let eni = &enis[idx];
        if eni.instance_id.is_some() {
            return Err(in_use(eni_id));
        }
        let az = &self.model.subnets[&eni.subnet_id].az;
        if *az != inst.availability_zone {
            return Err(Ec2Error::new(
                "InvalidParameterCombination",
                format!("You may not attach a network interface to an instance if they are not in the same availability zone ({eni_id} is in {az}, {instance_id} in {})", inst.availability_zone),
            ));
        }
        let attached: Vec<&EniState> = enis
            .iter()
            .filter(|e| e.instance_id.as_deref() == Some(instance_id))
            .collect();
        if attached.iter().any(|e| e.device_index == Some(dev)) {
            return Err(Ec2Error::invalid(format!(
                "Instance '{instance_id}' already has an interface attached at device index '{dev}'."
            )));
        }
        let (max_enis, _) = instance_type_limits(&inst.instance_type).unwrap_or((0, 0));
        if attached.len() as u32 >= max_enis {
            return Err(Ec2Error::new(
                "AttachmentLimitExceeded",
                format!(
                    "Interface count {} exceeds the limit for {}",
                    attached.len() + 1,
                    inst.instance_type
                ),
            ));
        }
        inner.serial += 1;
        let attachment = format!("eni-attach-0{:016x}", inner.serial);
        let mut next = enis.as_ref().clone();
        let e = &mut next[idx];
        e.instance_id = Some(instance_id.to_string());
        e.device_index = Some(dev);
        e.attachment_id = Some(attachment.clone());
        // EC2 sets DeleteOnTermination only for interfaces created with the instance.
        e.delete_on_termination = false;
        Self::commit(&mut inner, next);
        Ok(attachment)
    }

    fn find_instance(&self, id: &str) -> R<&crate::world::Instance> {
        if !is_hex_id(id, "i-") {
            return Err(Ec2Error::new(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"i-...\")"),
            ));
        }
        self.model
            .world
            .instances
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| {
                Ec2Error::new(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                )
            })
    }

    /// The ENI index holding this attachment now.
    fn by_attachment(enis: &[EniState], attachment: &str) -> R<usize> {
        enis.iter()
            .position(|e| e.attachment_id.as_deref() == Some(attachment))
            .ok_or_else(|| {
                Ec2Error::new(
                    "InvalidAttachmentID.NotFound",
                    format!("The attachment ID '{attachment}' does not exist"),
                )
            })
    }

    fn detach_interface(&self, p: &Params) -> R<()> {
        let attachment = p.require("AttachmentId")?;
        p.bool("Force")?;
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = Self::by_attachment(&enis, attachment)?;
        if enis[idx].device_index == Some(0) {
            return Err(Ec2Error::new(
                "OperationNotPermitted",
                format!(
                    "The network interface at device index 0 cannot be detached ({} of {}).",
                    enis[idx].id,
                    enis[idx].instance_id.as_deref().unwrap_or("its instance")
                ),
            ));
        }
        let mut next = enis.as_ref().clone();
        let e = &mut next[idx];
        e.instance_id = None;
        e.device_index = None;
        e.attachment_id = None;
        e.delete_on_termination = false;
        Self::commit(&mut inner, next);
        Ok(())
    }

    fn delete_interface(&self, p: &Params) -> R<()> {
        let eni_id = p.require("NetworkInterfaceId")?;
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        if enis[idx].instance_id.is_some() {
            return Err(in_use(eni_id));
        }
        let mut next = enis.as_ref().clone();
        next.remove(idx);
        Self::commit(&mut inner, next);
        Ok(())
    }

    fn modify_interface(&self, p: &Params) -> R<()> {
        let eni_id = p.require("NetworkInterfaceId")?;
        for k in [
            "Description.Value",
            "SourceDestCheck.Value",
            "SecurityGroupId.1",
            "AssociatePublicIpAddress",
            "EnaSrdSpecification.EnaSrdEnabled",
            "ConnectionTrackingSpecification.TcpEstablishedTimeout",
            "AssociatedSubnetId.1",
            "EnablePrimaryIpv6",
        ] {
            if p.get(k).is_some() {
                return Err(unsupported(&format!("ModifyNetworkInterfaceAttribute {k}")));
            }
        }
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        let Some(attachment) = p.get("Attachment.AttachmentId") else {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain an attribute to modify (the simulator implements Attachment.DeleteOnTermination)",
            ));
        };
        if enis[idx].attachment_id.as_deref() != Some(attachment) {
            return Err(Ec2Error::new(
                "InvalidAttachmentID.NotFound",
                format!("The attachment ID '{attachment}' does not exist on {eni_id}"),
            ));
        }
        let Some(dot) = p.bool("Attachment.DeleteOnTermination")? else {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain the parameter Attachment.DeleteOnTermination",
            ));
        };
        let mut next = enis.as_ref().clone();
        next[idx].delete_on_termination = dot;
        Self::commit(&mut inner, next);
        Ok(())
    }
}

/// The ENI actions; `None` for any other action.
pub(crate) fn execute(engine: &Engine, action: &str, p: &Params) -> Option<R<String>> {
    Some(match action {
        "CreateNetworkInterface" => engine.create_interface(p).map(|e| {
            let mut item = String::new();
            eni_xml(engine, &mut item, &e, false);
            // eni_xml writes a list <item>; CreateNetworkInterface returns the bare structure.
            let body = item
                .trim_end()
                .strip_prefix("        <item>")
                .and_then(|s| s.strip_suffix("</item>"))
                .unwrap_or(&item)
                .to_string();
            let token = p.get("ClientToken").map_or(String::new(), |t| {
                format!("    <clientToken>{}</clientToken>\n", crate::util::xml_escape(t))
            });
            format!("    <networkInterface>{body}</networkInterface>\n{token}")
        }),
        "AttachNetworkInterface" => engine.attach_interface(p).map(|a| {
            format!("    <attachmentId>{a}</attachmentId>\n    <networkCardIndex>0</networkCardIndex>\n")
        }),
        "DetachNetworkInterface" => engine
            .detach_interface(p)
            .map(|()| "    <return>true</return>\n".into()),
        "DeleteNetworkInterface" => engine
            .delete_interface(p)
            .map(|()| "    <return>true</return>\n".into()),
        "ModifyNetworkInterfaceAttribute" => engine
            .modify_interface(p)
            .map(|()| "    <return>true</return>\n".into()),
        _ => return None,
    })
}
