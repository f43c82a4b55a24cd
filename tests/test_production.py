"""The production deployment: templates, the instance configuration on real PostgreSQL, and run launches
through EcsRunLauncher against ECS in moto's server mode."""

import io
import json
import os
import subprocess
import sys
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
from cfnlint.decode import decode_str

from alchemy_pipeline.definitions import build_definitions
from alchemy_pipeline.settings import load_settings
from tests.conftest import REPO_ROOT, history_keys, use_env, vendor_tables, write_universe
from tests.tushare_server import VALID_TOKEN, TushareTestServer

DEPLOY = REPO_ROOT / "deploy"
TEMPLATES = sorted((DEPLOY / "cloudformation").glob("*.yaml"))


PROFILES = ("small", "always-on")


def resolve(node, conditions: dict[str, bool]):
    """``node`` with each Fn::If decided by ``conditions``; a branch of AWS::NoValue drops its key."""
    if isinstance(node, list):
        return [resolve(item, conditions) for item in node if not _no_value(item, conditions)]
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve(yes if conditions[name] else no, conditions)
        return {k: resolve(v, conditions) for k, v in node.items() if not _no_value(v, conditions)}
    return node


def _no_value(node, conditions) -> bool:
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        name, yes, no = node["Fn::If"]
        return _no_value(yes if conditions[name] else no, conditions)
    return node == {"Ref": "AWS::NoValue"}


def template(profile: str) -> dict:
    """The stack as deployed with ``Profile=profile`` and no custom domain: conditions decided, the
    resources and outputs of the other profile gone."""
    parsed, errors = decode_str((DEPLOY / "cloudformation" / "alchemy.yaml").read_text())
    assert not errors
    conditions = {"HasDomain": False, "HasNotifyUrls": True, "HasOperatorUrls": True, "IsSmall": profile == "small",
                  "IsAlwaysOn": profile == "always-on"}  # fmt: skip
    assert set(parsed["Conditions"]) == set(conditions)
    resolved = {}
    for section in ("Resources", "Outputs"):
        kept = {k: v for k, v in parsed[section].items() if conditions.get(v.get("Condition"), True)}
        resolved[section] = {k: resolve({f: x for f, x in v.items() if f != "Condition"}, conditions)
                             for k, v in kept.items()}  # fmt: skip
    # The parameters the conditions read are decided too.
    text = json.dumps(resolved)
    resolved["Parameters"] = {
        name: p for name, p in parsed["Parameters"].items() if f'"Ref": "{name}"' in text or f"${{{name}}}" in text
    }
    return {**{k: v for k, v in parsed.items() if k != "Conditions"}, **resolved}


def statements(role: dict) -> list[dict]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_templates_lint_clean(tmp_path):
    assert TEMPLATES
    # The template as written, and each profile's stack on its own (what CloudFormation deploys).
    profiles = [tmp_path / f"{profile}.json" for profile in PROFILES]
    for profile, path in zip(PROFILES, profiles, strict=True):
        path.write_text(json.dumps(template(profile)))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, TEMPLATES), *map(str, profiles)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_roles_hold_least_privilege(profile):
    resources = template(profile)["Resources"]
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert len(roles) >= 4
    for name, role in roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), f"{name} attaches managed policies"
        for statement in statements(role):
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{name} allows {action}"
            if statement["Resource"] == "*":
                # Only actions that AWS does not scope to a resource may use "*".
                assert set(as_list(statement["Action"])) <= {"ecr:GetAuthorizationToken", "ecs:DescribeTaskDefinition"}
    pass_role = [
        (name, s) for name, r in roles.items() for s in statements(r) if "iam:PassRole" in as_list(s["Action"])
    ]
    passed = {name: {ref["Fn::GetAtt"][0] for ref in s["Resource"]} for name, s in pass_role}
    # The daemon passes the runs' roles; in the small profile the scheduler passes the control plane's.
    assert passed == {"DaemonTaskRole": {"RunTaskRole", "TaskExecutionRole"}} | (
        {"ControlPlaneSchedulerRole": {"DaemonTaskRole", "TaskExecutionRole"}} if profile == "small" else {}
    )
    if profile == "small":
        assert "CodeServerTaskRole" not in roles  # the code location loads inside the control plane's task
        return
    # The code server evaluates the schedules, which read the cached trading calendar: that, and no write.
    code_server = statements(roles["CodeServerTaskRole"])
    assert {a for s in code_server for a in as_list(s["Action"])} == {"s3:GetObject", "s3:ListBucket"}
    reads = [s["Resource"] for s in code_server if "s3:GetObject" in as_list(s["Action"])]
    assert reads == [{"Fn::Sub": "${DataBucket.Arn}/reference/*"}]
    # Every container's entrypoint brings that calendar before its command starts: each task role reads it.
    for name in ("DaemonTaskRole", "CodeServerTaskRole", "RunTaskRole"):
        readable = [
            r for s in statements(roles[name]) if "s3:GetObject" in as_list(s["Action"]) for r in as_list(s["Resource"])
        ]
        assert {"Fn::Sub": "${DataBucket.Arn}/reference/*"} in readable or {
            "Fn::Sub": "${DataBucket.Arn}/*"
        } in readable, name


@pytest.mark.parametrize("profile", PROFILES)
def test_nothing_private_is_reachable_from_the_internet(profile):
    resources = template(profile)["Resources"]
    task_sg = resources["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["CidrIp"]) for r in task_sg] == [(3000, {"Ref": "AdminCidr"})]
    db_sg = resources["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [r["SourceSecurityGroupId"] for r in db_sg] == [{"Ref": "TaskSecurityGroup"}]
    if profile == "small":
        database = resources["DatabaseCluster"]["Properties"]
        assert database["VpcSecurityGroupIds"] == [{"Ref": "DatabaseSecurityGroup"}]
        assert resources["DatabaseClusterInstance"]["Properties"]["PubliclyAccessible"] is False
    else:
        database = resources["Database"]["Properties"]
        assert database["VPCSecurityGroups"] == [{"Ref": "DatabaseSecurityGroup"}]
        assert database["PubliclyAccessible"] is False
    assert database["StorageEncrypted"] is True and database["ManageMasterUserPassword"] is True
    for bucket in ("DataBucket", "SiteBucket"):
        block = resources[bucket]["Properties"]["PublicAccessBlockConfiguration"]
        assert all(block.values())


@pytest.mark.parametrize("profile", PROFILES)
def test_the_operators_secrets_are_free_parameter_store_secure_strings_and_only_the_database_has_a_secret(profile):
    resources = template(profile)["Resources"]
    assert not [name for name, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"]
    parameter = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${%s}"
    containers = [c for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition"
                  for c in r["Properties"]["ContainerDefinitions"]]  # fmt: skip
    for container in containers:
        secrets = {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
        assert secrets["TUSHARE_TOKEN"] == {"Fn::Sub": parameter % "TushareTokenParameter"}
        assert secrets["ALCHEMY_NOTIFY_URLS"] == {"Fn::Sub": parameter % "NotifyUrlsParameter"}
        assert secrets["ALCHEMY_OPERATOR_URLS"] == {"Fn::Sub": parameter % "OperatorUrlsParameter"}
    execution = statements(resources["TaskExecutionRole"])
    readable = [s["Resource"] for s in execution if s["Action"] == "ssm:GetParameters"]
    names = ("TushareTokenParameter", "NotifyUrlsParameter", "OperatorUrlsParameter")
    assert readable == [[{"Fn::Sub": parameter % name} for name in names]]


def test_the_small_profile_sleeps_between_wake_ups():
    resources = template("small")["Resources"]
    services = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::ECS::Service"}
    assert services == {"WebserverService": services["WebserverService"]}  # no daemon or code server service
    assert services["WebserverService"]["DesiredCount"] == 0  # deploy/ui up starts it
    scaling = resources["DatabaseCluster"]["Properties"]["ServerlessV2ScalingConfiguration"]
    assert scaling["MinCapacity"] == 0 and scaling["SecondsUntilAutoPause"] <= 600
    assert resources["DatabaseClusterInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    wake_ups = {r["Properties"]["ScheduleExpression"]: r["Properties"] for r in resources.values()
                if r["Type"] == "AWS::Scheduler::Schedule"}  # fmt: skip
    # Five minutes before daily_signals_schedule (0 18 * * 1-5), trading_calendar_schedule (0 8 * * *) and
    # operator_deadline_schedule (0 23 * * 1-5), whose check must run on the days nothing else did.
    assert set(wake_ups) == {"cron(55 17 ? * MON-FRI *)", "cron(55 7 ? * MON-FRI *)", "cron(55 22 ? * MON-FRI *)"}
    for wake_up in wake_ups.values():
        assert wake_up["ScheduleExpressionTimezone"] == "Asia/Shanghai"
        ecs = wake_up["Target"]["EcsParameters"]
        assert ecs["TaskDefinitionArn"] == {"Ref": "ServicesTaskDefinition"} and ecs["TaskCount"] == 1
        assert ecs["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
    daemon = resources["ServicesTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert daemon["Command"][:3] == ["python", "-m", "alchemy_pipeline.control_plane"]
    workspace = daemon["Command"][daemon["Command"].index("--workspace") + 1]
    webserver = resources["WebserverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Command"]
    assert webserver[webserver.index("-w") + 1] == workspace == "/opt/dagster/home/workspace-small.yaml"
    assert (DEPLOY / "workspace-small.yaml").exists() and "deploy/workspace-small.yaml" in (
        DEPLOY / "Dockerfile"
    ).read_text()


def production_env(postgres, database: str, task_definition: str, bucket: str) -> dict[str, str]:
    return {
        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(postgres.port),
        "DAGSTER_POSTGRES_USER": "postgres",
        "DAGSTER_POSTGRES_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_POSTGRES_DB": database,
        "DAGSTER_RUN_TASK_DEFINITION": task_definition,
        "ALCHEMY_DATA_BUCKET": bucket,
    }


@pytest.fixture
def production(aws, postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml as the instance, on a fresh database, with ECS and S3 in moto."""
    suffix = uuid.uuid4().hex[:8]
    database = f"dagster_{suffix}"
    postgres.create_database(database)
    ec2, ecs, s3 = boto3.client("ec2"), boto3.client("ecs"), boto3.client("s3")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as the stack's VPC
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"] for i in (0, 1)]
    group = ec2.create_security_group(GroupName=f"tasks-{suffix}", Description="tasks", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName=f"alchemy-{suffix}")["cluster"]["clusterArn"]
    family = f"alchemy-{suffix}-run"
    ecs.register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="512",
        memory="1024",
        containerDefinitions=[
            {
                "name": "run",
                "cpu": 512,
                "memory": 1024,
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/alchemy:1",
                "environment": [{"name": "ALCHEMY_ENV", "value": "aws"}],
                "secrets": [
                    {"name": "TUSHARE_TOKEN", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t"},
                ],
            }
        ],
    )
    bucket = f"alchemy-data-{suffix}"
    s3.create_bucket(Bucket=bucket)
    env = production_env(postgres, database, family, bucket)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield {"instance": instance, "database": database, "cluster": cluster, "family": family,
               "subnets": subnets, "group": group, "postgres": postgres}  # fmt: skip


def test_production_instance_runs_a_backfill_on_postgres(production, tmp_path, monkeypatch):
    funds = {"510300.SH": "沪深300ETF", "159915.SZ": "创业板ETF"}
    server = TushareTestServer(vendor_tables(list(funds), "2023-01-01", "2024-07-05")).start()
    try:
        env = {
            "ALCHEMY_DATA_DIR": str(tmp_path / "data"),
            "ALCHEMY_PUBLISH_DIR": str(tmp_path / "site"),
            "ALCHEMY_UNIVERSE": str(write_universe(tmp_path / "universe.csv", funds)),
            "ALCHEMY_BACKTEST_START": "2024-06-24",
            "TUSHARE_TOKEN": VALID_TOKEN,
            "TUSHARE_API_URL": server.url,
        }
        use_env(monkeypatch, env, keep=("ALCHEMY_DATA_BUCKET",))
        defs = build_definitions(load_settings())
        job = defs.resolve_job_def("daily_signals_job")
        instance = production["instance"]
        window = history_keys("2024-06-24")
        for selection, start, end in (
            ([dg.AssetKey("etf_daily_prices")], window[0], window[-1]),
            (None, "2024-06-24", "2024-06-28"),
        ):
            result = job.execute_in_process(
                instance=instance,
                asset_selection=selection,
                tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            )
            assert result.success
    finally:
        server.stop()
    assert "postgres" in type(instance.run_storage).__module__
    connection = psycopg2.connect(
        host="127.0.0.1", port=production["postgres"].port, user="postgres", dbname=production["database"]
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cursor.fetchone()[0] == 2
        cursor.execute(
            "SELECT count(DISTINCT partition) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            ('["signal_report"]',),
        )
        assert cursor.fetchone()[0] == 5
    connection.close()
    assert instance.get_materialized_partitions(dg.AssetKey("signal_report")) >= {"2024-06-24", "2024-06-28"}


@pytest.fixture
def daemon_task(production, monkeypatch):
    """The daemon's own task in the emulator, and the one thing moto cannot give: the ECS task-metadata
    endpoint (ECS_CONTAINER_METADATA_URI_V4) that a container reads its task from. Faked here."""
    ecs = boto3.client("ecs")
    ecs.register_task_definition(
        family="alchemy-daemon",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="1024",
        containerDefinitions=[{"name": "daemon", "image": "alchemy:1", "cpu": 256, "memory": 1024}],
    )
    task = ecs.run_task(
        cluster=production["cluster"],
        taskDefinition="alchemy-daemon",
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": production["subnets"],
                "securityGroups": [production["group"]],
                "assignPublicIp": "ENABLED",
            }
        },
    )["tasks"][0]
    metadata = {"Cluster": production["cluster"], "TaskARN": task["taskArn"]}

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(metadata if self.path.endswith("/task") else {"Name": "daemon"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"http://127.0.0.1:{server.server_address[1]}/v4/daemon")
    yield task
    server.shutdown()


def test_ecs_run_launcher_starts_the_run_in_its_own_task(production, daemon_task):
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.test_utils import create_run_for_test

    instance = production["instance"]
    origin = JobPythonOrigin(
        "daily_signals_job",
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer("alchemy_pipeline.definitions", "defs", "/opt/dagster/app"),
            container_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/alchemy:1",
        ),
    )
    run = create_run_for_test(
        instance, job_name="daily_signals_job", job_code_origin=origin, tags={"dagster/partition": "2024-06-28"}
    )
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    ecs = boto3.client("ecs")
    arns = set(ecs.list_tasks(cluster=production["cluster"])["taskArns"]) - {daemon_task["taskArn"]}
    assert len(arns) == 1
    task = ecs.describe_tasks(cluster=production["cluster"], tasks=list(arns))["tasks"][0]
    assert task["clusterArn"] == production["cluster"]
    assert task["taskDefinitionArn"].split("/")[-1].startswith(production["family"] + ":")
    override = task["overrides"]["containerOverrides"][0]
    assert override["name"] == "run"
    command = " ".join(override["command"])
    assert "execute_run" in command and run.run_id in command
    assert task["overrides"]["cpu"] == "512" and task["overrides"]["memory"] == "1024"
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    container = definition["containerDefinitions"][0]
    assert [s["name"] for s in container["secrets"]] == ["TUSHARE_TOKEN"]
    assert {"name": "ALCHEMY_ENV", "value": "aws"} in container["environment"]
    attachment = next(a for a in task.get("attachments", []) if a["type"] == "ElasticNetworkInterface")
    details = {d["name"]: d["value"] for d in attachment["details"]}
    assert details["subnetId"] in production["subnets"]  # the daemon's network, as configured
    tags = instance.get_run_by_id(run.run_id).tags
    assert tags["ecs/task_arn"] == task["taskArn"]


def test_dockerfile_is_slim_non_root_and_compiler_free():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "USER dagster" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "alchemy_pipeline.container_entrypoint"]' in dockerfile
    assert "--only-binary=:all:" in dockerfile  # no compiler step, TA-Lib included
    for toolchain in ("build-essential", "gcc", "make ", "ta-lib-0.4"):
        assert toolchain not in dockerfile


def test_deploy_ui_starts_and_stops_the_ui_and_the_control_plane(aws, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    ec2, ecs = boto3.client("ec2"), boto3.client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as the stack's VPC
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"] for i in (0, 1)]
    group = ec2.create_security_group(GroupName=f"tasks-{suffix}", Description="tasks", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName=f"alchemy-{suffix}", capacityProviders=["FARGATE", "FARGATE_SPOT"])[
        "cluster"
    ]["clusterName"]
    definitions = {}
    for name in ("daemon", "webserver"):
        definitions[name] = ecs.register_task_definition(
            family=f"alchemy-{suffix}-{name}", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
            cpu="512", memory="1024", containerDefinitions=[{"name": name, "image": "alchemy:1", "memory": 1024}],
        )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [group], "assignPublicIp": "ENABLED"}}
    ecs.create_service(cluster=cluster, serviceName="webserver", taskDefinition=definitions["webserver"],
                       desiredCount=0, launchType="FARGATE", networkConfiguration=network)  # fmt: skip
    # The stack's outputs that deploy/ui reads (the stack itself cannot be created in moto: a stand-in).
    values = {"ClusterName": cluster, "WebserverServiceName": "webserver",
              "ControlPlaneTaskDefinition": definitions["daemon"], "TaskSubnets": ",".join(subnets),
              "TaskSecurityGroup": group}  # fmt: skip
    stand_in = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {key: {"Value": value} for key, value in values.items()}}  # fmt: skip
    stack = f"alchemy-{suffix}"
    boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(stand_in))
    env = {**os.environ, "STACK": stack}

    def ui(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(DEPLOY / "ui"), *args], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def desired() -> int:
        return ecs.describe_services(cluster=cluster, services=["webserver"])["services"][0]["desiredCount"]

    started = ui("up", "30")
    assert started.returncode == 0, started.stderr
    assert desired() == 1
    tasks = ecs.describe_tasks(cluster=cluster, tasks=ecs.list_tasks(cluster=cluster)["taskArns"])["tasks"]
    control_plane = [t for t in tasks if t["taskDefinitionArn"] == definitions["daemon"]]
    assert len(control_plane) == 1
    command = control_plane[0]["overrides"]["containerOverrides"][0]["command"]
    assert command[:3] == ["python", "-m", "alchemy_pipeline.control_plane"]
    assert command[command.index("--stay-minutes") + 1] == "30"
    shown = ui("status").stdout  # moto moves a task through ECS's states as it is described
    assert shown.count("webserver: ") == shown.count("control plane: ") == 1 and "not running" not in shown
    assert ui("down").returncode == 0 and desired() == 0
    refused = ui("up", "soon")
    assert refused.returncode == 2 and "MINUTES is a whole number from 1 to 720" in refused.stderr
    elsewhere = subprocess.run([sys.executable, str(DEPLOY / "ui"), "up"], env={**env, "STACK": "nope"},
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert elsewhere.returncode == 1 and "Traceback" not in elsewhere.stderr
    assert elsewhere.stderr.startswith("deploy/ui up (stack nope): ") and "does not exist" in elsewhere.stderr


def test_cloudformation_package_uploads_the_lambda_and_the_packaged_stack_lints_clean(aws, tmp_path):
    """`aws cloudformation package` as deploy/README.md runs it (the AWS CLI, its S3 upload to moto)."""
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    packaged = tmp_path / "alchemy.packaged.yaml"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aws"), "cloudformation", "package", "--template-file",
         str(DEPLOY / "cloudformation" / "alchemy.yaml"), "--s3-bucket", bucket, "--output-template-file",
         str(packaged)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed, errors = decode_str(packaged.read_text())
    assert not errors
    code = parsed["Resources"]["SubscribeFunction"]["Properties"]["Code"]
    assert code["S3Bucket"] == bucket
    archive = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=bucket, Key=code["S3Key"])["Body"].read()))
    assert archive.namelist() == ["app.py"]
    assert archive.read("app.py") == (DEPLOY / "lambda" / "subscribe" / "app.py").read_bytes()
    assert parsed["Parameters"]["Profile"]["AllowedValues"] == list(PROFILES)  # one package, both profiles
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(packaged)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
