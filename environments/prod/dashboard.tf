# One CloudWatch dashboard for the whole environment, in the home region: per region, what a
# rollout watches, each colour a line of its own (requests, target 5xx, p99 response time, healthy
# targets) and the service's running tasks (Container Insights).

locals {
  # One widget per metric; each plots the blue and the green target group.
  colour_metrics = [
    { title = "Requests", metric = "RequestCount", stat = "Sum" },
    { title = "Target 5xx", metric = "HTTPCode_Target_5XX_Count", stat = "Sum" },
    { title = "Target response time p99 (s)", metric = "TargetResponseTime", stat = "p99" },
    { title = "Healthy targets", metric = "HealthyHostCount", stat = "Minimum" },
  ]

  dashboard_widgets = flatten([
    for i, r in [for m in local.regions : m.metric_dimensions] : concat(
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
  region         = var.home_region
  dashboard_name = "${var.name}-prod"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
