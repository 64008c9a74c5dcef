# One region of a bluegreen environment: network, ALB with production and test listeners, twin
# target groups behind a weighted forward, an ECS service with the EXTERNAL deployment controller
# and no task set, the task definition bluegreen registers releases from, roles, logs, alarms with
# their SNS topic, and the ECR repository. Every resource sets `region` (AWS provider v6), so one
# provider serves every region. bluegreen owns the production weights, the test route's action and
# the task sets: Terraform sets them once and ignores them afterwards.

locals {
  prefix = "${var.name}-${var.environment}"
  https  = var.certificate_arn != null
  tags = merge(var.tags, {
    application = var.name
    environment = var.environment
    managed-by  = "terraform"
  })
  colours = toset(["blue", "green"])
  # The template's image: a tag nothing ever pushes (tags are IMMUTABLE and releases are semver),
  # so the template can never run by accident; bluegreen pins each release's image by digest.
  placeholder_image = "${var.create_repository ? aws_ecr_repository.this[0].repository_url : var.repository_url}:unreleased"
}

data "aws_availability_zones" "this" {
  #checkov:skip=CKV_AWS_394:the module uses the first two available zones; a zone AWS adds later does not change which two
  region = var.region
  state  = "available"
}

data "aws_caller_identity" "this" {}

data "aws_partition" "this" {}

# ---- network ------------------------------------------------------------------------------------

resource "aws_vpc" "this" {
  region               = var.region
  cidr_block           = var.vpc_cidr
  enable_dns_hostnames = true
  enable_dns_support   = true
  tags                 = merge(local.tags, { Name = local.prefix })
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  region = var.region
  vpc_id = aws_vpc.this.id
  tags   = local.tags
}

resource "aws_internet_gateway" "this" {
  region = var.region
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = local.prefix })
}

resource "aws_subnet" "public" {
  #checkov:skip=CKV_AWS_130:public subnets hold the internet-facing ALB (and the tasks when private_tasks = false, which the task security group restricts to the ALB)
  count                   = 2
  region                  = var.region
  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone       = data.aws_availability_zones.this.names[count.index]
  map_public_ip_on_launch = true
  tags                    = merge(local.tags, { Name = "${local.prefix}-public-${count.index}" })
}

resource "aws_subnet" "private" {
  count             = var.private_tasks ? 2 : 0
  region            = var.region
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  availability_zone = data.aws_availability_zones.this.names[count.index]
  tags              = merge(local.tags, { Name = "${local.prefix}-private-${count.index}" })
}

resource "aws_route_table" "public" {
  region = var.region
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${local.prefix}-public" })
}

resource "aws_route" "public_internet" {
  region                 = var.region
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count          = 2
  region         = var.region
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count  = var.private_tasks ? 2 : 0
  region = var.region
  domain = "vpc"
  tags   = merge(local.tags, { Name = "${local.prefix}-nat-${count.index}" })
}

resource "aws_nat_gateway" "this" {
  count         = var.private_tasks ? 2 : 0
  region        = var.region
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(local.tags, { Name = "${local.prefix}-${count.index}" })
}

resource "aws_route_table" "private" {
  count  = var.private_tasks ? 2 : 0
  region = var.region
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${local.prefix}-private-${count.index}" })
}

resource "aws_route" "private_nat" {
  count                  = var.private_tasks ? 2 : 0
  region                 = var.region
  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[count.index].id
}

resource "aws_route_table_association" "private" {
  count          = var.private_tasks ? 2 : 0
  region         = var.region
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_flow_log" "this" {
  region               = var.region
  vpc_id               = aws_vpc.this.id
  traffic_type         = "REJECT"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow.arn
  iam_role_arn         = aws_iam_role.flow.arn
  tags                 = local.tags
}

resource "aws_cloudwatch_log_group" "flow" {
  region            = var.region
  name              = "/vpc/${local.prefix}/flow"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_iam_role" "flow" {
  name = "${local.prefix}-${var.region}-flow"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "vpc-flow-logs.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "flow" {
  name = "write-flow-logs"
  role = aws_iam_role.flow.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = "${aws_cloudwatch_log_group.flow.arn}:*"
    }]
  })
}

# ---- load balancer ------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  region      = var.region
  name        = "${local.prefix}-alb"
  description = "ALB of ${local.prefix}: production listener open to ingress_cidrs, test listener to test_listener_cidrs"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "production" {
  for_each          = toset(var.ingress_cidrs)
  region            = var.region
  security_group_id = aws_security_group.alb.id
  description       = "production listener"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = local.https ? 443 : var.listener_port
  to_port           = local.https ? 443 : var.listener_port
}

resource "aws_vpc_security_group_ingress_rule" "redirect" {
  for_each          = local.https ? toset(var.ingress_cidrs) : toset([])
  region            = var.region
  security_group_id = aws_security_group.alb.id
  description       = "HTTP, redirected to HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "test" {
  for_each          = toset(var.test_listener_cidrs)
  region            = var.region
  security_group_id = aws_security_group.alb.id
  description       = "test listener: only requests with the secret test header reach a colour"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.test_listener_port
  to_port           = var.test_listener_port
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  region                       = var.region
  security_group_id            = aws_security_group.alb.id
  description                  = "to the tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:a WAF web ACL is attached by the organisation's firewall manager, not per service
  #checkov:skip=CKV_AWS_91:access logs are optional (access_logs_bucket) and enabled when a bucket is given
  #checkov:skip=CKV2_AWS_20:with certificate_arn the module adds the HTTP to HTTPS redirect listener; without one there is no HTTPS to redirect to
  region                     = var.region
  name                       = local.prefix
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  tags                       = local.tags

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = local.prefix
      enabled = true
    }
  }
}

# Twin groups; neither is "prod": the live one is whichever carries the production weight.
resource "aws_lb_target_group" "colour" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB to task traffic stays inside the VPC, restricted by the task security group
  for_each             = local.colours
  region               = var.region
  name                 = "${local.prefix}-${each.key}"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(local.tags, { colour = each.key })
}

# The weighted forward bluegreen shifts. Terraform sets 100/0 once and never fights the CLI.
resource "aws_lb_listener" "production" {
  #checkov:skip=CKV_AWS_2:HTTP only when no certificate_arn is given (local or internal use); with one, this listener is HTTPS
  #checkov:skip=CKV_AWS_103:TLS policy applies only to the HTTPS form of this listener, which sets ELBSecurityPolicy-TLS13-1-2-2021-06
  region            = var.region
  load_balancer_arn = aws_lb.this.arn
  port              = local.https ? 443 : var.listener_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null

  default_action {
    type = "forward"
    forward {
      target_group {
        arn    = aws_lb_target_group.colour["blue"].arn
        weight = 100
      }
      target_group {
        arn    = aws_lb_target_group.colour["green"].arn
        weight = 0
      }
    }
  }

  lifecycle {
    ignore_changes = [default_action]
  }

  tags = local.tags
}

resource "aws_lb_listener" "redirect" {
  #checkov:skip=CKV_AWS_2:this listener only redirects HTTP to HTTPS
  #checkov:skip=CKV_AWS_103:no TLS on a redirect-only HTTP listener
  count             = local.https ? 1 : 0
  region            = var.region
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

# The test listener answers 404 to everything but the test route below: CI runners and deployers
# reach it from anywhere (GitHub-hosted runners have no fixed addresses), and only a request that
# carries the secret header gets through to a colour.
resource "aws_lb_listener" "test" {
  #checkov:skip=CKV_AWS_2:plain HTTP test port: requests without the secret test header get a fixed 404, and the route reaches only the colour that is not yet live
  #checkov:skip=CKV_AWS_103:plain HTTP test listener, see CKV_AWS_2
  region            = var.region
  load_balancer_arn = aws_lb.this.arn
  port              = var.test_listener_port
  protocol          = "HTTP"

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  tags = local.tags
}

# The test route (ECS blue/green's "test listener rule"): requests with the secret header go to the
# colour bluegreen is about to release. Terraform creates it on blue and never touches its action
# again: bluegreen points it at the new colour before any production traffic.
resource "aws_lb_listener_rule" "test" {
  region       = var.region
  listener_arn = aws_lb_listener.test.arn
  priority     = 1

  condition {
    http_header {
      http_header_name = var.test_header_name
      values           = [var.test_header_value]
    }
  }

  action {
    type = "forward"
    forward {
      target_group {
        arn    = aws_lb_target_group.colour["blue"].arn
        weight = 100
      }
      target_group {
        arn    = aws_lb_target_group.colour["green"].arn
        weight = 0
      }
    }
  }

  lifecycle {
    ignore_changes = [action]
  }

  tags = local.tags
}

# ---- ECS ----------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  region = var.region
  name   = local.prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_cloudwatch_log_group" "service" {
  region            = var.region
  name              = "/ecs/${local.prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached to the task sets, which bluegreen creates outside Terraform's state (the service's bluegreen:security-groups tag names it for a region's first one)
  region      = var.region
  name        = "${local.prefix}-tasks"
  description = "Tasks of ${local.prefix}: reachable only from the ALB"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  region                       = var.region
  security_group_id            = aws_security_group.tasks.id
  description                  = "from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  region            = var.region
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS out: ECR image pulls, CloudWatch Logs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

data "aws_iam_policy_document" "ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Pulls the image and writes logs.
resource "aws_iam_role" "execution" {
  name               = "${local.prefix}-${var.region}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# What the application itself may do: nothing yet.
resource "aws_iam_role" "task" {
  name               = "${local.prefix}-${var.region}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks.json
  tags               = local.tags
}

# The template of every release in this region (family <name>-<environment>, container `app`): a
# region's first `bluegreen promote` registers a revision of it with the release's image pinned by
# digest and APP_VERSION set; later releases are registered from the live revision. This revision
# itself never runs: its image is a placeholder tag (local.placeholder_image).
resource "aws_ecs_task_definition" "initial" {
  region                   = var.region
  family                   = local.prefix
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([{
    name                   = "app"
    image                  = local.placeholder_image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    portMappings           = [{ containerPort = var.container_port, protocol = "tcp" }]
    environment = [
      { name = "APP_VERSION", value = "unreleased" },
      { name = "PORT", value = tostring(var.container_port) },
    ]
    healthCheck = {
      command     = ["CMD", "/service", "healthcheck"]
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 5
    }
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "app"
      }
    }
  }])

  # bluegreen registers every later revision of the family; Terraform registers this one once.
  lifecycle {
    ignore_changes = all
  }

  tags = local.tags
}

# With the EXTERNAL controller the service holds no task definition or load balancer of its own:
# bluegreen owns its task sets (one per live release). A fresh service has none; the first
# `bluegreen promote` of a region creates one from the task_family template.
resource "aws_ecs_service" "this" {
  region        = var.region
  name          = var.name
  cluster       = aws_ecs_cluster.this.id
  desired_count = var.desired_count

  deployment_controller {
    type = "EXTERNAL"
  }

  lifecycle {
    ignore_changes = [desired_count, task_definition, load_balancer, network_configuration]
  }

  # Where the first task set runs: with the EXTERNAL controller the network lives on task sets,
  # and before the first release there is none to copy it from, so bluegreen reads these tags
  # (bluegreen/src/aws/ecs.rs). Tag values cannot hold commas: ids are space-separated.
  tags = merge(local.tags, {
    "bluegreen:subnets"          = join(" ", var.private_tasks ? aws_subnet.private[*].id : aws_subnet.public[*].id)
    "bluegreen:security-groups"  = aws_security_group.tasks.id
    "bluegreen:assign-public-ip" = var.private_tasks ? "DISABLED" : "ENABLED"
    "bluegreen:launch-type"      = "FARGATE"
  })
}

resource "aws_appautoscaling_target" "this" {
  count              = var.autoscaling == null ? 0 : 1
  region             = var.region
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.autoscaling.min
  max_capacity       = var.autoscaling.max
}

resource "aws_appautoscaling_policy" "cpu" {
  count              = var.autoscaling == null ? 0 : 1
  region             = var.region
  name               = "${local.prefix}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  resource_id        = aws_appautoscaling_target.this[0].resource_id
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = var.autoscaling.cpu_target
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# ---- alarms (the gate reads them) and their notifications -------------------------------------

# Alarm notifications go to an encrypted topic. AWS's managed SNS key does not let CloudWatch use
# it, so the topic has its own key whose policy does (and, through IAM, this account's principals).
resource "aws_kms_key" "alarms" {
  region                  = var.region
  description             = "SNS alarm notifications of ${local.prefix} in ${var.region}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "Account"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.this.partition}:iam::${data.aws_caller_identity.this.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchAlarmsPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.this.account_id } }
      },
    ]
  })
  tags = local.tags
}

resource "aws_kms_alias" "alarms" {
  region        = var.region
  name          = "alias/${local.prefix}-alarms"
  target_key_id = aws_kms_key.alarms.key_id
}

resource "aws_sns_topic" "alarms" {
  region            = var.region
  name              = "${local.prefix}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == null ? 0 : 1
  region    = var.region
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  for_each            = local.colours
  region              = var.region
  alarm_name          = "${local.prefix}-${each.key}-5xx"
  alarm_description   = "Targets of ${each.key} answer 5xx"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = var.alarm_5xx_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  dimensions = {
    LoadBalancer = aws_lb.this.arn_suffix
    TargetGroup  = aws_lb_target_group.colour[each.key].arn_suffix
  }
  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "unhealthy" {
  for_each            = local.colours
  region              = var.region
  alarm_name          = "${local.prefix}-${each.key}-unhealthy"
  alarm_description   = "Targets of ${each.key} fail health checks"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  dimensions = {
    LoadBalancer = aws_lb.this.arn_suffix
    TargetGroup  = aws_lb_target_group.colour[each.key].arn_suffix
  }
  tags = local.tags
}

# ---- ECR ----------------------------------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  count                = var.create_repository ? 1 : 0
  region               = var.region
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = var.kms_key_arn == null ? "AES256" : "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  count      = var.create_repository ? 1 : 0
  region     = var.region
  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "keep the last ${var.ecr_keep_images} tagged images"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "drop untagged images after a day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
    ]
  })
}
