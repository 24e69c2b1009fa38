"""Reports: court-ready incident summaries built by workers, signed and verifiable."""
