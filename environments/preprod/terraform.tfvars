name                 = "hello"
home_region          = "us-east-1"
github_repository    = "bluegreen-dev/bluegreen"
image                = "public.ecr.aws/docker/library/busybox:stable"
app_version          = "bootstrap"
test_listener_cidrs  = ["203.0.113.0/24"]
prod_deploy_role_arn = "arn:aws:iam::222222222222:role/bluegreen-deploy-prod"
