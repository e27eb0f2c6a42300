//! Root package: holds only the end-to-end tests in tests/ and their helper module.
