output "table_name" {
  description = "Name of the lock and journal table."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "ARN of the lock and journal table (for the deploy role's policy)."
  value       = aws_dynamodb_table.this.arn
}
