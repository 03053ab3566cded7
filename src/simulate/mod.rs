//! The built-in TAP API simulator (in progress).
