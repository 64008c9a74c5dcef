name                  = "hello"
home_region           = "us-east-1"
github_repository     = "bluegreen-dev/bluegreen"
image                 = "public.ecr.aws/docker/library/busybox:stable"
app_version           = "bootstrap"
test_listener_cidrs   = ["203.0.113.0/24"]
source_read_role_arn  = "arn:aws:iam::111111111111:role/bluegreen-ecr-read-prod"
source_repository_arn = "arn:aws:ecr:us-east-1:111111111111:repository/hello"
