"""localaws: a local stand-in for the AWS regions bluegreen deploys to.

moto in server mode answers the control planes (STS, ECS, ELBv2, ECR, DynamoDB, CloudWatch). This
package extends it, in one launcher process, with what moto lacks and bluegreen's tests need; each
extension is documented in README.md next to this file with what real AWS does.
"""
