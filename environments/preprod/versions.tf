terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    # The test header's secret (module environment).
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # State in S3 with S3-native locking; bucket and key come from backend.hcl:
  #   terraform init -backend-config=backend.hcl
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

# One provider for every region: resources set their own region (AWS provider v6).
provider "aws" {
  region = var.home_region

  default_tags {
    tags = {
      application = var.name
      environment = "preprod"
    }
  }
}
