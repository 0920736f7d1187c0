//! Agent files (placeholder, being written).
