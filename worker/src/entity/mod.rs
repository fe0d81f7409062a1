//! SeaORM entities for the two tables, used by the read API. (The write path
//! is hand-written SQL in `store`: batch inserts with ON CONFLICT rules.)

pub mod message;
pub mod message_status_event;
