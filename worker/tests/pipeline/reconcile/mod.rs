//! Reconciliation against a fake Twilio Messages API (wiremock; the one
//! thing we mock) and the real pipeline: callbacks go through RabbitMQ and
//! the worker into a database of the test's own. `rig` sets it up;
//! `answers` is about what Twilio's answers lead to, `runs` about runs
//! themselves (side by side, dry, from the command line, after callbacks).

mod answers;
mod rig;
mod runs;
