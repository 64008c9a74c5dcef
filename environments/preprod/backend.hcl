bucket = "bluegreen-terraform-state-111111111111"
key    = "preprod/terraform.tfstate"
region = "us-east-1"
