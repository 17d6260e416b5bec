"""Engines that apply the TapStack program: the local sandbox and Pulumi (Automation API)."""
