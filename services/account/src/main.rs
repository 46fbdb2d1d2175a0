//! `admit-account`: the account service of the production topology.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    admit_runtime::memory::tune();
    let file = std::env::var_os("ADMIT_CONFIG").map(std::path::PathBuf::from);
    let settings = admit_runtime::Settings::load(file.as_deref())?;
    admit_runtime::logging::init(&settings.log);
    if let Err(e) = admit_account::run(settings).await {
        admit_runtime::selfcheck::exit("admit-account", &e);
    }
    Ok(())
}
