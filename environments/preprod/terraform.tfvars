name                 = "hello"
home_region          = "us-east-1"
github_repository    = "bluegreen-dev/bluegreen"
prod_deploy_role_arn = "arn:aws:iam::222222222222:role/bluegreen-deploy-prod"
# Only in an account without a GitHub OIDC provider (aws iam list-open-id-connect-providers):
# create_github_oidc_provider = true
# operator_principals = ["arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_Deployer_*"]
# alarm_email         = "oncall@example.com"
