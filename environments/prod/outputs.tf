output "deploy_role_arn" {
  description = "The GitHub deploy role (AWS_DEPLOY_ROLE_ARN of the GitHub environment)."
  value       = module.github.role_arn
}

output "lock_table" {
  description = "The lock and journal table."
  value       = module.lock.table_name
}

output "alb_dns_names" {
  description = "Production endpoint per region (the release workflow curls each)."
  value = {
    "us-east-1"      = module.us_east_1.alb_dns_name
    "eu-west-1"      = module.eu_west_1.alb_dns_name
    "ap-southeast-2" = module.ap_southeast_2.alb_dns_name
  }
}
