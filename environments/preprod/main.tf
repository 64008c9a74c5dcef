# preprod: one region in account 111111111111. CI builds images into this account's ECR; bluegreen
# promotes them here first, and prod copies them from here.

module "us_east_1" {
  source = "../../terraform/modules/region"

  name                = var.name
  environment         = "preprod"
  region              = "us-east-1"
  vpc_cidr            = "10.40.0.0/16"
  image               = var.image
  app_version         = var.app_version
  desired_count       = 2
  test_listener_cidrs = var.test_listener_cidrs
  deletion_protection = var.deletion_protection
}

module "lock" {
  source = "../../terraform/modules/deploy-lock"

  name                = "bluegreen-preprod"
  region              = var.home_region
  deletion_protection = var.deletion_protection
}

module "github" {
  source = "../../terraform/modules/github-oidc"

  repository        = var.github_repository
  environment       = "preprod"
  role_name         = "bluegreen-deploy-preprod"
  listener_arns     = module.us_east_1.listener_arns
  target_group_arns = module.us_east_1.target_group_arns
  service_arns      = [module.us_east_1.service_arn]
  task_role_arns    = module.us_east_1.task_role_arns
  repository_arns   = [module.us_east_1.repository_arn]
  lock_table_arn    = module.lock.table_arn
}

# prod's deploy role reads release images from here (bluegreen's source.role_arn in prod).
resource "aws_iam_role" "ecr_read_for_prod" {
  name = "bluegreen-ecr-read-prod"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.prod_deploy_role_arn }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "ecr_read_for_prod" {
  name = "read-release-images"
  role = aws_iam_role.ecr_read_for_prod.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:DescribeImages", "ecr:DescribeImageScanFindings"]
        Resource = module.us_east_1.repository_arn
      },
      {
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
    ]
  })
}
