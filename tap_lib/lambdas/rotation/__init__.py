"""Secrets Manager rotation function for the payment application's database credentials."""
