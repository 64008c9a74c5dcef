bucket = "bluegreen-terraform-state-222222222222"
key    = "prod/terraform.tfstate"
region = "us-east-1"
