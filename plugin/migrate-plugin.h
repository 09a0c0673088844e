#ifndef MIGRATE_PLUGIN_H
#define MIGRATE_PLUGIN_H

struct module;
struct mail_user;
struct migrate_settings;

extern const char *migrate_plugin_version;

/* The user's migrate settings (plugin settings, userdb fields, -o
   overrides), read once per user, when first asked for: a login that
   never migrates (IMAP, POP3) never reads them.  require_source: the
   source host and password must be set. */
int migrate_user_settings_read(struct mail_user *user, bool require_source,
			       const struct migrate_settings **set_r,
			       const char **error_r);

/* The "migrate" mail plugin: the engine and its settings, for doveadm
   migrate and for the modules that depend on it (migrate_lda). */
void migrate_plugin_init(struct module *module);
void migrate_plugin_deinit(void);

#endif
