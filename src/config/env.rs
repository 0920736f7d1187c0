//! Environment overrides: `SYMBIONT_*` variables, applied over the file.

use super::error::ConfigError;
use super::schema::{Field, Section, Val};
use super::{LoadedConfig, Origin};

/// The variables that set `field`, the seed's spelling first. When two are given they must
/// agree.
pub(crate) fn vars_for(field: Field) -> Vec<String> {
    let fixed: &[&str] = match field {
        Field::AllowNative => &["SYMBIONT_ALLOW_NATIVE_EXECUTION", "SYMBIONT_NATIVE_ENABLED"],
        Field::DefaultTier => &["SYMBIONT_DEFAULT_SANDBOX_TIER"],
        Field::WorkingDirectory => &[
            "SYMBIONT_NATIVE_WORKING_DIR",
            "SYMBIONT_NATIVE_WORKING_DIRECTORY",
        ],
        Field::DataDir => &["SYMBIONT_DATA_DIR"],
        f if f.section() == Section::Native => {
            return vec![format!("SYMBIONT_NATIVE_{}", f.name().to_ascii_uppercase())]
        }
        _ => &[],
    };
    fixed.iter().map(|s| s.to_string()).collect()
}

/// Apply every set variable to `loaded`, recording `Origin::Env`. A variable that is empty
/// (or only whitespace) counts as unset.
pub(crate) fn apply(
    loaded: &mut LoadedConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for field in Field::ALL {
        let mut chosen: Option<(String, String, Val)> = None;
        for var in vars_for(field) {
            let Some(raw) = env(&var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let kind = field.kind();
            let val = kind.parse_env(&raw).ok_or_else(|| {
                ConfigError::new(format!(
                    "environment variable {var}={raw}: expected {}",
                    kind.expected_env()
                ))
            })?;
            if let Some(range) = field.out_of_range(&val) {
                return Err(ConfigError::new(format!(
                    "environment variable {var}={raw}: `{}` {range}",
                    field.key()
                )));
            }
            match &chosen {
                Some((first_var, first_raw, first_val)) if *first_val != val => {
                    return Err(ConfigError::new(format!(
                        "environment variables {first_var}={first_raw} and {var}={raw} disagree; set one of them"
                    )));
                }
                Some(_) => {}
                None => chosen = Some((var, raw, val)),
            }
        }
        if let Some((var, _, val)) = chosen {
            field.set(&mut loaded.config, val);
            loaded.set_origin(&field.key(), Origin::Env(var));
        }
    }
    Ok(())
}
