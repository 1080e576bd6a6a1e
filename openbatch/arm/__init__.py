"""The management plane (Azure Resource Manager) of Microsoft.Batch: see app.py."""
