# What an environment has once, in its home region: the test route's secret, kept in SSM Parameter
# Store for bluegreen, and one CloudWatch dashboard over all its regions. Every region module of the
# environment gets test_header_value; this module gets their metric_dimensions back (regions). That
# is no cycle: Terraform wires module inputs and outputs value by value, and the secret depends on
# nothing but its random_password.

# The test route's secret: the value of the test header (the region module's test_header_name,
# [test_traffic] in bluegreen.toml). Letters and digits only: ALB header conditions compare
# case-insensitively and read * and ? as wildcards. Rotate, from the root that calls this module
# "environment": terraform apply -replace=module.environment.random_password.test_header
resource "random_password" "test_header" {
  length  = 40
  special = false
}

# bluegreen reads it from the lock's region ([test_traffic].parameter).
resource "aws_ssm_parameter" "test_header" {
  #checkov:skip=CKV_AWS_337:AWS-managed key alias/aws/ssm on purpose: the value is also in plain text in every region's listener rule (elasticloadbalancing:DescribeRules, e.g. ReadOnlyAccess) and in the Terraform state, so a CMK would protect nothing; the secret keeps the internet, not the account's readers, away from the colour under test (rotate: terraform apply -replace=module.environment.random_password.test_header)
  region      = var.region
  name        = "/bluegreen/${var.name}-${var.environment}/test-header"
  description = "Value of the test header that lets a request through the test listeners of ${var.name}-${var.environment} to the colour being released"
  type        = "SecureString"
  value       = random_password.test_header.result
  tags        = var.tags
}

# The dashboard: per region, what a rollout watches, each colour a line of its own (requests,
# target 5xx, p99 response time, healthy targets) and the service's running tasks (Container
# Insights).
locals {
  # One widget per metric; each plots the blue and the green target group.
  colour_metrics = [
    { title = "Requests", metric = "RequestCount", stat = "Sum" },
    { title = "Target 5xx", metric = "HTTPCode_Target_5XX_Count", stat = "Sum" },
    { title = "Target response time p99 (s)", metric = "TargetResponseTime", stat = "p99" },
    { title = "Healthy targets", metric = "HealthyHostCount", stat = "Minimum" },
  ]

  dashboard_widgets = flatten([
    for i, r in var.regions : concat(
      [{
        type   = "text"
        x      = 0
        y      = i * 13
        width  = 24
        height = 1
        properties = {
          markdown = "## ${r.region}: cluster ${r.cluster}, service ${r.service}"
        }
      }],
      [for j, w in local.colour_metrics : {
        type   = "metric"
        x      = (j % 3) * 8
        y      = i * 13 + 1 + floor(j / 3) * 6
        width  = j < 3 ? 8 : 12
        height = 6
        properties = {
          title  = "${r.region}: ${w.title}"
          region = r.region
          view   = "timeSeries"
          period = 60
          stat   = w.stat
          metrics = [for c in ["blue", "green"] : [
            "AWS/ApplicationELB", w.metric,
            "TargetGroup", r.target_groups[c],
            "LoadBalancer", r.load_balancer,
            { label = c, color = c == "blue" ? "#1f77b4" : "#2ca02c", region = r.region },
          ]]
        }
      }],
      [{
        type   = "metric"
        x      = 12
        y      = i * 13 + 7
        width  = 12
        height = 6
        properties = {
          title   = "${r.region}: running tasks"
          region  = r.region
          view    = "timeSeries"
          period  = 60
          stat    = "Average"
          metrics = [["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", r.cluster, "ServiceName", r.service, { region = r.region }]]
        }
      }],
    )
  ])
}

resource "aws_cloudwatch_dashboard" "this" {
  region         = var.region
  dashboard_name = "${var.name}-${var.environment}"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
