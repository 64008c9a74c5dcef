output "deploy_role_arn" {
  description = "The GitHub deploy role (AWS_DEPLOY_ROLE_ARN of the GitHub environment)."
  value       = module.github.role_arn
}

output "lock_table" {
  description = "The lock and journal table."
  value       = module.lock.table_name
}

output "alb_dns_names" {
  description = "Production endpoint per region."
  value       = { "us-east-1" = module.us_east_1.alb_dns_name }
}

output "repository_url" {
  description = "Where the release workflow pushes images."
  value       = module.us_east_1.repository_url
}

output "test_header_parameter" {
  description = "SSM parameter (home region) with the test header's secret ([test_traffic].parameter)."
  value       = module.environment.test_header_parameter_name
}

output "alarm_topic_arns" {
  description = "SNS topic of each region's alarms (ALARM and OK notifications)."
  value       = { for r in local.regions : r.metric_dimensions.region => r.alarm_topic_arn }
}

output "dashboard_url" {
  description = "The environment's CloudWatch dashboard."
  value       = module.environment.dashboard_url
}

output "bluegreen" {
  description = "Everything bluegreen's environment file names, in one object: `terraform output -json | bluegreen init -e preprod` writes environments/preprod/bluegreen.toml from it (--check in the infra workflow's plan)."
  value = {
    account_id = data.aws_caller_identity.current.account_id
    role_arn   = module.github.role_arn
    # CI pushes release images to us-east-1's repository; promoting within one registry copies nothing.
    source = {
      region     = module.us_east_1.metric_dimensions.region
      account_id = data.aws_caller_identity.current.account_id
      repository = module.us_east_1.names.repository
      role_arn   = null
    }
    test_header_parameter = module.environment.test_header_parameter_name
    lock                  = { table = module.lock.table_name, region = var.home_region }
    regions               = { for r in local.regions : r.metric_dimensions.region => r.names }
  }
}
