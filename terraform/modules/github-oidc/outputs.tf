output "role_arn" {
  description = "ARN of the deploy role (role-to-assume in the workflow, role_arn in the environment file)."
  value       = aws_iam_role.deploy.arn
}

output "provider_arn" {
  description = "ARN of the GitHub OIDC provider."
  value       = local.provider_arn
}
