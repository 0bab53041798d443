"""The room: trust across an air gap: bundles exported from a registry and imported offline (docs/trust.md)."""
