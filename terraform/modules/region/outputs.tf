output "alb_dns_name" {
  description = "DNS name of the ALB (the production endpoint of this region)."
  value       = aws_lb.this.dns_name
}

output "names" {
  description = "The names bluegreen's environment file uses for this region (the root's bluegreen output gathers them for `bluegreen init`)."
  value = {
    cluster            = aws_ecs_cluster.this.name
    service            = aws_ecs_service.this.name
    load_balancer      = aws_lb.this.name
    listener_port      = aws_lb_listener.production.port
    test_listener_port = aws_lb_listener.test.port
    blue_target_group  = aws_lb_target_group.colour["blue"].name
    green_target_group = aws_lb_target_group.colour["green"].name
    task_family        = aws_ecs_task_definition.initial.family
    alarms             = concat([for a in aws_cloudwatch_metric_alarm.target_5xx : a.alarm_name], [for a in aws_cloudwatch_metric_alarm.unhealthy : a.alarm_name])
    repository         = var.create_repository ? aws_ecr_repository.this[0].name : regex("^[^/]+/(.+)$", var.repository_url)[0]
    test_header        = var.test_header_name
  }
}

output "test_rule_arn" {
  description = "The test route: the test listener's header rule whose forward bluegreen points at the new colour (for the deploy role's policy)."
  value       = aws_lb_listener_rule.test.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm of this region notifies (ALARM and OK)."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_key_arn" {
  description = "KMS key of the alarm topic; a publisher other than CloudWatch (e.g. an on_rollback hook) needs kms:GenerateDataKey* and kms:Decrypt on it."
  value       = aws_kms_key.alarms.arn
}

output "metric_dimensions" {
  description = "The CloudWatch dimensions of this region's metrics, for the environment's dashboard: region, ALB and target group ARN suffixes (by colour), cluster and service names."
  value = {
    region        = var.region
    load_balancer = aws_lb.this.arn_suffix
    target_groups = { for c, tg in aws_lb_target_group.colour : c => tg.arn_suffix }
    cluster       = aws_ecs_cluster.this.name
    service       = aws_ecs_service.this.name
  }
}

output "listener_arns" {
  description = "Production and test listener ARNs (for the deploy role's policy)."
  value       = [aws_lb_listener.production.arn, aws_lb_listener.test.arn]
}

output "target_group_arns" {
  description = "Blue and green target group ARNs."
  value       = [for tg in aws_lb_target_group.colour : tg.arn]
}

output "service_arn" {
  description = "ARN of the ECS service bluegreen deploys to."
  value       = aws_ecs_service.this.id
}

output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "task_role_arns" {
  description = "Execution and task role ARNs (the only roles the deploy role may pass)."
  value       = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
}

output "repository_arn" {
  description = "ARN of this region's ECR repository, when this stack created it."
  value       = var.create_repository ? aws_ecr_repository.this[0].arn : null
}

output "repository_url" {
  description = "URL of this region's ECR repository (the one this stack created, or repository_url)."
  value       = var.create_repository ? aws_ecr_repository.this[0].repository_url : var.repository_url
}
