//! Rebuild when a migration is added: `sqlx::migrate!` embeds the files it finds at compile
//! time, and without this cargo would not notice a new file in the folder.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
