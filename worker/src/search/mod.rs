//! Finding messages by what people know about them: an address, a status,
//! an error code, an account, a time window. `GET /messages` and the
//! console's search both go through here: `filter` turns the query string
//! into a typed filter (or says which parameter is malformed), `cursor` is
//! the opaque keyset position between pages, `query` reads one page;
//! `history` reads one message by its SID with all its events.

mod cursor;
mod filter;
mod history;
mod query;

pub use filter::SearchParams;
pub use history::{message_history, MessageHistory};
pub use query::{search, Page};
