"""The sandbox engine: the TapStack program applied to a local AWS emulator (moto server)."""
