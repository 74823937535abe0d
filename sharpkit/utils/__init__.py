"""Layer 0, utilities: argument checks, crash-safe files, seeding, provenance and locks. Imports nothing
else of sharpkit."""
