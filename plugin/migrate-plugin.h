#ifndef MIGRATE_PLUGIN_H
#define MIGRATE_PLUGIN_H

struct module;
struct mail_user;
struct migrate_settings;

extern const char *migrate_plugin_version;

/* The user's migrate settings (plugin settings, userdb fields, -o
   overrides), read once per user, when first asked for; the source
   password file is not read (migrate_settings_read_password_file() is,
   by a sync).  require_source: the source host and a password or
   password file must be set. */
int migrate_user_settings_read(struct mail_user *user, bool require_source,
			       const struct migrate_settings **set_r,
			       const char **error_r);

/* The "migrate" mail plugin: the engine and its settings, for doveadm
   migrate (loaded for doveadm only: no login or delivery needs it). */
void migrate_plugin_init(struct module *module);
void migrate_plugin_deinit(void);

#endif
