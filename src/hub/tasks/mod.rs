//! What the A2A front door keeps about a task beyond the request itself: its message history
//! (`history`) and its push notification configs with their delivery worker (`push`). Both
//! live in auxiliary tables of the store and are removed with their request by the sweeper.

pub(super) mod history;
pub mod push;
