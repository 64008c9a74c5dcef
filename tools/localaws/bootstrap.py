"""Topology bootstrap: creates, through the AWS API of the stand-in and as each environment's own
account, what bluegreen's Terraform creates per region (terraform/modules/region): VPC and two
subnets, ALB with production and test listeners, twin target groups, ECS cluster and a service with
the EXTERNAL deployment controller running an initial task set on blue at 100% (none with
"empty": a region as a fresh `terraform apply` leaves it, before its first release), the ECR
repository (IMMUTABLE, scan on push), the alarms, the environment's lock table in its home region,
and the test route: the test listener answers a fixed 404 unless a rule's http-header condition
matches the environment's secret, kept as a SecureString SSM parameter in the lock's region.

Spec (JSON):
{
  "account": "111111111111",
  "image": "<registry host>/<repo>@sha256:…",   # the live release, e.g. from /_localaws/seed
  "app_version": "v1.1.0",
  "repository": "hello",
  "lock_table": {"name": "bluegreen-preprod", "region": "us-east-1"},
  "test_traffic": {"header": "X-Bluegreen-Test", "parameter": "/bluegreen/hello-preprod/test-header",
                   "value": "<secret>", "region": optional},  # default: lock_table's region
  "regions": [{"region": "us-east-1", "cluster": "…", "service": "…", "load_balancer": "…",
               "listener_port": 18000, "test_listener_port": 18001,
               "blue_target_group": "…", "green_target_group": "…",
               "alarms": ["…"], "desired_count": 2, "container_port": 8080, "family": "…",
               "image": optional per-region override of the live image,
               "empty": optional, true for a region with no task set (no live release yet)}]
}
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

DEFAULT_ACCOUNT = "123456789012"  # moto's account for its default credentials


def session_for(endpoint: str, account: str, region: str) -> boto3.Session:
    base = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    if account == DEFAULT_ACCOUNT:
        return base
    creds = base.client("sts", endpoint_url=endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/localaws-bootstrap", RoleSessionName="localaws-bootstrap"
    )["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=region)


def run(endpoint: str, spec: dict[str, Any]) -> dict[str, Any]:
    account = str(spec["account"])
    cfg = Config(retries={"max_attempts": 1})
    out: dict[str, Any] = {"account": account, "regions": {}}
    lock = spec.get("lock_table")
    if lock:
        ddb = session_for(endpoint, account, lock["region"]).client("dynamodb", endpoint_url=endpoint, config=cfg)
        if lock["name"] not in ddb.list_tables()["TableNames"]:
            ddb.create_table(TableName=lock["name"], BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                   {"AttributeName": "sk", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                        {"AttributeName": "sk", "KeyType": "RANGE"}])
        out["lock_table"] = lock
    test = spec.get("test_traffic")
    if test:
        home = test.get("region") or (lock or {}).get("region") or spec["regions"][0]["region"]
        ssm = session_for(endpoint, account, home).client("ssm", endpoint_url=endpoint, config=cfg)
        ssm.put_parameter(Name=test["parameter"], Value=test["value"], Type="SecureString", Overwrite=True)
        out["test_traffic"] = test
    for r in spec["regions"]:
        out["regions"][r["region"]] = _region(endpoint, account, spec, r, cfg)
    return out


def _region(endpoint: str, account: str, spec: dict[str, Any], r: dict[str, Any], cfg: Config) -> dict[str, Any]:
    region = r["region"]
    s = session_for(endpoint, account, region)
    client = lambda name: s.client(name, endpoint_url=endpoint, config=cfg)  # noqa: E731
    ec2, elb, ecs, ecr, cw = client("ec2"), client("elbv2"), client("ecs"), client("ecr"), client("cloudwatch")
    port = int(r.get("container_port", 8080))

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # The region's first two zones, as Terraform's data source picks them (not every region has "b").
    zones = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])[:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az)
               ["Subnet"]["SubnetId"] for i, az in enumerate(zones)]
    sg = ec2.create_security_group(GroupName=f"{r['load_balancer']}-alb", Description="alb", VpcId=vpc)["GroupId"]
    lb = elb.create_load_balancer(Name=r["load_balancer"], Subnets=subnets, SecurityGroups=[sg],
                                  Scheme="internet-facing", Type="application")["LoadBalancers"][0]
    tgs = {}
    for colour in ("blue", "green"):
        tg = elb.create_target_group(
            Name=r[f"{colour}_target_group"], Protocol="HTTP", Port=port, VpcId=vpc, TargetType="ip",
            HealthCheckProtocol="HTTP", HealthCheckPath="/health", HealthCheckIntervalSeconds=10,
            HealthCheckTimeoutSeconds=5, HealthyThresholdCount=2, UnhealthyThresholdCount=2,
            Matcher={"HttpCode": "200"})["TargetGroups"][0]["TargetGroupArn"]
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "30"}])
        tgs[colour] = tg
    forward = {"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": tgs["blue"], "Weight": 100}, {"TargetGroupArn": tgs["green"], "Weight": 0}]}}
    prod = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP",
                               Port=int(r["listener_port"]), DefaultActions=[forward])["Listeners"][0]
    # As terraform/modules/region: the test port answers 404 unless the secret header matches.
    not_found = {"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "not found"}}
    test_traffic = spec.get("test_traffic")
    test = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP",
                               Port=int(r["test_listener_port"]),
                               DefaultActions=[not_found if test_traffic else forward])["Listeners"][0]
    test_rule = None
    if test_traffic:
        test_rule = elb.create_rule(
            ListenerArn=test["ListenerArn"], Priority=1, Actions=[forward],
            Conditions=[{"Field": "http-header", "HttpHeaderConfig": {
                "HttpHeaderName": test_traffic["header"], "Values": [test_traffic["value"]]}}],
        )["Rules"][0]["RuleArn"]

    image = r.get("image") or spec["image"]
    ecs.create_cluster(clusterName=r["cluster"], settings=[{"name": "containerInsights", "value": "enabled"}])
    family = r.get("family") or r["service"]
    td = ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": image, "essential": True,
                               "portMappings": [{"containerPort": port, "protocol": "tcp"}],
                               "environment": [{"name": "APP_VERSION", "value": spec.get("app_version", "")}]}],
    )["taskDefinition"]["taskDefinitionArn"]
    network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg], "assignPublicIp": "ENABLED"}}
    # As terraform/modules/region, the service's tags say where a first task set runs (with the
    # EXTERNAL controller the network configuration lives on task sets).
    placement = [{"key": "bluegreen:subnets", "value": " ".join(subnets)},
                 {"key": "bluegreen:security-groups", "value": sg},
                 {"key": "bluegreen:assign-public-ip", "value": "ENABLED"},
                 {"key": "bluegreen:launch-type", "value": "FARGATE"}]
    ecs.create_service(cluster=r["cluster"], serviceName=r["service"], desiredCount=int(r.get("desired_count", 2)),
                       deploymentController={"type": "EXTERNAL"}, tags=placement)
    ts = None if r.get("empty") else ecs.create_task_set(
        cluster=r["cluster"], service=r["service"], taskDefinition=td, launchType="FARGATE",
        networkConfiguration=network, scale={"value": 100.0, "unit": "PERCENT"},
        loadBalancers=[{"targetGroupArn": tgs["blue"], "containerName": "app", "containerPort": port}],
    )["taskSet"]["taskSetArn"]
    if ts:
        ecs.update_service_primary_task_set(cluster=r["cluster"], service=r["service"], primaryTaskSet=ts)

    repo = spec.get("repository")
    if repo and repo not in [x["repositoryName"] for x in ecr.describe_repositories()["repositories"]]:
        ecr.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE",
                              imageScanningConfiguration={"scanOnPush": True})
    for alarm in r.get("alarms", []):
        cw.put_metric_alarm(AlarmName=alarm, MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="bootstrap")
    return {"load_balancer_arn": lb["LoadBalancerArn"], "dns_name": lb["DNSName"],
            "listener_arn": prod["ListenerArn"], "test_listener_arn": test["ListenerArn"],
            "test_rule_arn": test_rule,
            "blue_target_group_arn": tgs["blue"], "green_target_group_arn": tgs["green"],
            "task_definition_arn": td, "task_set_arn": ts, "vpc": vpc, "subnets": subnets, "security_group": sg}
