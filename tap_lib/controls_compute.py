"""The network, compute and identity controls Prowler evaluates on the stack (issue 19), as rows of
tap_lib/controls.py's table: Security Hub ids where FSBP has the control, else Prowler's check id.

Kept apart from controls.py because most of them are one judgement over a table: the ~15
`ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_*` checks differ only in their ports
(SG_PORT_CONTROLS), which preflight (preflight/vpc_controls.py) and verify
(ops/hardening_compute.py) both read, so a control means the same before and after deploy.
"""
from __future__ import annotations

SG = "ec2_securitygroup_allow_ingress_from_internet_to_"

# (control id, Prowler's check, TCP ports that must not be open to 0.0.0.0/0 or ::/0)
SG_PORT_CONTROLS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("EC2.13", f"{SG}tcp_port_22", (22,)),
    ("EC2.14", f"{SG}tcp_port_3389", (3389,)),
    ("EC2.19", f"{SG}high_risk_tcp_ports",
     (25, 110, 135, 143, 445, 3000, 4333, 5000, 5500, 8080, 8088)),
    (f"{SG}tcp_port_cassandra_7199_9160_8888", "", (7199, 9160, 8888)),
    (f"{SG}tcp_port_elasticsearch_kibana_9200_9300_5601", "", (9200, 9300, 5601)),
    (f"{SG}tcp_port_ftp_20_21", "", (20, 21)),
    (f"{SG}tcp_port_kafka_9092", "", (9092,)),
    (f"{SG}tcp_port_memcached_11211", "", (11211,)),
    (f"{SG}tcp_port_mongodb_27017_27018", "", (27017, 27018)),
    (f"{SG}tcp_port_mysql_3306", "", (3306,)),
    (f"{SG}tcp_port_oracle_1521_2483", "", (1521, 2483)),
    (f"{SG}tcp_port_postgres_5432", "", (5432,)),
    (f"{SG}tcp_port_redis_6379", "", (6379,)),
    (f"{SG}tcp_port_sql_server_1433_1434", "", (1433, 1434)),
    (f"{SG}tcp_port_telnet_23", "", (23,)),
)

SG_ALL_PORTS = f"{SG}all_ports"
SG_ANY_PORT = f"{SG}any_port"
SG_FROM_IP = f"{SG}any_port_from_ip"
SG_WIDE_OPEN = "ec2_securitygroup_allow_wide_open_public_ipv4"
SG_LAUNCH_WIZARD = "ec2_securitygroup_from_launch_wizard"
SG_MANY_RULES = "ec2_securitygroup_with_many_ingress_egress_rules"
SG_UNUSED = "EC2.22"
EIP_UNASSIGNED = "EC2.12"
SUBNET_PUBLIC_IP = "EC2.15"
NACL_ANY_PORT = "ec2_networkacl_allow_ingress_any_port"
SUBNETS_AZ = "vpc_subnet_different_az"
SUBNETS_TIERS = "vpc_subnet_separate_private_public"
ENDPOINT_TRUST = "vpc_endpoint_connections_trust_boundaries"
ENDPOINT_MULTI_AZ = "vpc_endpoint_multi_az_enabled"
LAMBDA_PUBLIC = "Lambda.1"
LAMBDA_RUNTIME = "Lambda.2"
LAMBDA_VPC = "Lambda.3"
LAMBDA_TRAIL = "awslambda_function_invoke_api_operations_cloudtrail_logging_enabled"
LAMBDA_SECRETS = "awslambda_function_no_secrets_in_variables"
LAMBDA_LAYERS = "awslambda_function_using_cross_account_layers"
KMS_NOT_DELETED = "KMS.3"
KMS_ROTATION = "KMS.4"
KMS_PUBLIC = "KMS.5"
KMS_USED = "kms_cmk_are_used"
KMS_MULTI_REGION = "kms_cmk_not_multi_region"
LOG_SECRETS = "cloudwatch_log_group_no_secrets_in_logs"
LOG_PUBLIC = "cloudwatch_log_group_not_publicly_accessible"
IAM_PRIVESC = "iam_inline_policy_allows_privilege_escalation"
IAM_CLOUDTRAIL = "iam_inline_policy_no_full_access_to_cloudtrail"
IAM_KMS = "iam_inline_policy_no_full_access_to_kms"
IAM_MARKETPLACE = "iam_inline_policy_no_wildcard_marketplace_subscribe"
TRUST_ACCOUNT = "iam_role_service_trust_restricts_source_to_account"

# Lambda runtimes AWS has deprecated (Prowler's default obsolete_lambda_runtimes)
OBSOLETE_RUNTIMES = frozenset({
    "java8", "go1.x", "provided", "python3.6", "python2.7", "python3.7", "python3.8",
    "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs", "nodejs8.10", "nodejs10.x",
    "nodejs12.x", "nodejs14.x", "nodejs16.x", "dotnet5.0", "dotnet6", "dotnet7",
    "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "ruby2.5", "ruby2.7"})
MAX_SG_RULES = 50            # Prowler's max_security_group_rules
WIDE_OPEN_PREFIX = 24        # a public IPv4 range wider than /24 is "wide open"

TABLE: list[tuple[str, str, str]] = [
    *((c, "securityhub" if c[:4] == "EC2." else "prowler",
       f"security groups admit no internet traffic to TCP {', '.join(map(str, p))}")
      for c, _, p in SG_PORT_CONTROLS),
    (SG_ALL_PORTS, "prowler", "security groups admit no internet traffic on all ports"),
    (SG_ANY_PORT, "prowler", "security groups admit no internet traffic on any port"),
    (SG_FROM_IP, "prowler", "security groups admit no traffic from a specific public address"),
    (SG_WIDE_OPEN, "prowler", "security groups name no public IPv4 range wider than /24"),
    (SG_LAUNCH_WIZARD, "prowler", "no security group was made by the EC2 launch wizard"),
    (SG_MANY_RULES, "prowler", f"security groups have at most {MAX_SG_RULES} rules each way"),
    (SG_UNUSED, "securityhub", "unused security groups are removed"),
    (EIP_UNASSIGNED, "securityhub", "unused Elastic IPs are released"),
    (SUBNET_PUBLIC_IP, "securityhub", "subnets do not assign public IP addresses on launch"),
    (NACL_ANY_PORT, "prowler", "network ACLs do not admit all traffic from the internet"),
    (SUBNETS_AZ, "prowler", "the VPC has subnets in more than one Availability Zone"),
    (SUBNETS_TIERS, "prowler", "the VPC has both public and private subnets"),
    (ENDPOINT_TRUST, "prowler", "VPC endpoint policies admit only the stack's account"),
    (ENDPOINT_MULTI_AZ, "prowler", "interface VPC endpoints have subnets in more than one zone"),
    (LAMBDA_PUBLIC, "securityhub", "Lambda function policies prohibit public access"),
    (LAMBDA_RUNTIME, "securityhub", "Lambda functions use supported runtimes"),
    (LAMBDA_VPC, "securityhub", "Lambda functions are in a VPC"),
    (LAMBDA_TRAIL, "prowler", "CloudTrail records the functions' invoke API operations"),
    (LAMBDA_SECRETS, "prowler", "Lambda environment variables hold no secrets"),
    (LAMBDA_LAYERS, "prowler", "Lambda functions use no other account's layers"),
    (KMS_NOT_DELETED, "securityhub", "KMS keys are not scheduled for deletion"),
    (KMS_ROTATION, "securityhub", "KMS key rotation is enabled"),
    (KMS_PUBLIC, "securityhub", "KMS key policies prohibit public access"),
    (KMS_USED, "prowler", "customer-managed KMS keys are enabled (in use)"),
    (KMS_MULTI_REGION, "prowler", "customer-managed KMS keys are single-Region"),
    (LOG_SECRETS, "prowler", "log events hold no secrets"),
    (LOG_PUBLIC, "prowler", "no log resource policy makes a log group public"),
    (IAM_PRIVESC, "prowler", "inline policies allow no privilege escalation"),
    (IAM_CLOUDTRAIL, "prowler", "inline policies grant no cloudtrail:* on all resources"),
    (IAM_KMS, "prowler", "inline policies grant no kms:* on all resources"),
    (IAM_MARKETPLACE, "prowler", "inline policies allow no aws-marketplace:Subscribe on *"),
    (TRUST_ACCOUNT, "prowler",
     "a conditioned service trust pins aws:SourceAccount or an account's aws:SourceArn"),
]
