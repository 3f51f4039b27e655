# AURA keys, the provider key vault and usage accounting arrive with the gateway core.
