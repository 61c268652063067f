//! Compose files loaded as compose-go (the reference docker compose v2 uses) loads them.
pub mod discovery;
pub mod dotenv;
pub mod extends;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod profiles;
pub mod yaml;
