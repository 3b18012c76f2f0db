//! DescribeInstanceTypes: the per-ENI address limits of the instance types the simulator knows.
//! aws-sdk-ec2's model: `InstanceType.N` in (DescribeInstanceTypesInput "The instance types."),
//! out `instanceTypeSet` items with `networkInfo` `maximumNetworkInterfaces` ("The maximum number
//! of network interfaces for the instance type."), `ipv4AddressesPerInterface` ("The maximum
//! number of IPv4 addresses per network interface.") and `ipv6AddressesPerInterface`.

use crate::engine::Ec2Error;
use crate::util::xml_escape;
use crate::world::instance_type_limits;
use std::fmt::Write;

/// `types`: the requested names (`InstanceType.N`); empty lists every type the simulator knows.
pub(crate) fn describe_instance_types(types: &[String]) -> Result<String, Ec2Error> {
    const KNOWN: [&str; 5] = [
        "t3.medium",
        "m5.large",
        "m5.xlarge",
        "c5.4xlarge",
        "c5n.18xlarge",
    ];
    let unknown: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| instance_type_limits(t).is_none())
        .collect();
    if !unknown.is_empty() {
        // The code EC2 uses here is not in the SDK model; see the README's "not documented" list.
        return Err(Ec2Error::new(
            "InvalidInstanceType",
            format!(
                "The following supplied instance types do not exist: [{}]",
                unknown.join(", ")
            ),
        ));
    }
    let names: Vec<&str> = if types.is_empty() {
        KNOWN.to_vec()
    } else {
        types.iter().map(String::as_str).collect()
    };
    let mut x = String::from("    <instanceTypeSet>\n");
    for name in names {
        let Some((enis, per_eni)) = instance_type_limits(name) else {
            continue;
        };
        let _ = write!(
            x,
            "        <item>\n            <instanceType>{}</instanceType>\n            <networkInfo>\n                <maximumNetworkInterfaces>{enis}</maximumNetworkInterfaces>\n                <ipv4AddressesPerInterface>{per_eni}</ipv4AddressesPerInterface>\n                <ipv6AddressesPerInterface>{per_eni}</ipv6AddressesPerInterface>\n                <ipv6Supported>true</ipv6Supported>\n            </networkInfo>\n        </item>\n",
            xml_escape(name)
        );
    }
    x.push_str("    </instanceTypeSet>\n");
    Ok(x)
}
