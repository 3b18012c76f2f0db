"""Baseline for `make bench`: the EC2 and IMDS calls that AWS's sample "IP management" container
(Python + boto3, run as an initContainer or sidecar in every Multus pod) makes for one pod.

Written for this benchmark from the sample's description, not copied from it:
  1. IMDS: the instance identity document (instance id, region).
  2. DescribeInstances for this instance -> its ENIs.
  3. DescribeSubnets for each secondary ENI (device index > 0) -> subnet CIDRs.
  4. AssignPrivateIpAddresses (AllowReassignment) of the pod addresses to the ENI whose subnet holds them.

Differences from the sample, all in the sample's favour or neutral: the pod addresses come from argv
instead of reading the pod's interfaces; IMDSv2 (token) is used because the simulator, like a hardened
node, refuses IMDSv1; only the standard library is used besides boto3 (no `requests`, no `netaddr`).

Credentials come from boto3's default chain, which ends at the instance profile in IMDS (the
simulator's, through AWS_EC2_METADATA_SERVICE_ENDPOINT), as on a node.

usage: sample_ipmgmt.py EC2_ENDPOINT IMDS_URL POD_IPV4 [POD_IPV4 ...]
"""

import ipaddress
import json
import sys
import urllib.request

import boto3


def imds_token(base):
    req = urllib.request.Request(
        base + "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.read().decode()


def imds_get(base, token, path):
    req = urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.read().decode()


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    ec2_url, imds_url, pod_ips = argv[1], argv[2].rstrip("/"), argv[3:]
    token = imds_token(imds_url)
    doc = json.loads(imds_get(imds_url, token, "/latest/dynamic/instance-identity/document"))
    ec2 = boto3.client("ec2", region_name=doc["region"], endpoint_url=ec2_url)

    reservations = ec2.describe_instances(InstanceIds=[doc["instanceId"]])["Reservations"]
    enis = reservations[0]["Instances"][0]["NetworkInterfaces"]
    wanted = [ipaddress.ip_address(a) for a in pod_ips]
    plan = {}
    for eni in enis:
        if eni["Attachment"]["DeviceIndex"] == 0:
            continue
        subnet = ec2.describe_subnets(SubnetIds=[eni["SubnetId"]])["Subnets"][0]
        net = ipaddress.ip_network(subnet["CidrBlock"])
        for a in wanted:
            if a in net:
                plan.setdefault(eni["NetworkInterfaceId"], []).append(str(a))
    if not plan:
        print("no secondary ENI's subnet holds " + " ".join(pod_ips), file=sys.stderr)
        return 1
    for eni_id, addrs in plan.items():
        ec2.assign_private_ip_addresses(
            NetworkInterfaceId=eni_id, PrivateIpAddresses=addrs, AllowReassignment=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
