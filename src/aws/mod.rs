//! AWS: GitHub OIDC to STS credentials, ECR tokens, pull secrets and image pushes.
