//! Directus fake (in progress).
