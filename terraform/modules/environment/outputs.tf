output "test_header_value" {
  description = "The test header's secret, for every region module's test_header_value. Depends on nothing but its random_password (not on regions, which the region modules' outputs feed)."
  value       = random_password.test_header.result
  sensitive   = true
}

output "test_header_parameter_name" {
  description = "Name of the SSM parameter holding the secret ([test_traffic].parameter in bluegreen.toml)."
  value       = aws_ssm_parameter.test_header.name
}

output "test_header_parameter_arn" {
  description = "ARN of the SSM parameter holding the secret (for the deploy role's policy)."
  value       = aws_ssm_parameter.test_header.arn
}

output "dashboard_name" {
  description = "Name of the environment's CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "dashboard_url" {
  description = "Console URL of the environment's CloudWatch dashboard."
  value       = "https://${var.region}.console.aws.amazon.com/cloudwatch/home?region=${var.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}
