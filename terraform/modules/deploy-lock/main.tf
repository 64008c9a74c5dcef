# The DynamoDB table that holds an environment's deployment lock and its journal: partition key
# pk, sort key sk (strings). The lock expires by its own lease attribute; `ttl` is for ageing out
# old journal records if you choose to set it.

resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV_AWS_119:encryption at rest is always on; a customer-managed key is optional via kms_key_arn
  region       = var.region
  name         = var.name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  deletion_protection_enabled = var.deletion_protection
  tags                        = var.tags
}
