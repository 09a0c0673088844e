#ifndef MIGRATE_PLUGIN_H
#define MIGRATE_PLUGIN_H

struct module;
struct mail_user;
struct migrate_settings;

extern const char *migrate_plugin_version;

/* Read the user's migrate settings (plugin settings, userdb fields, -o
   overrides).  Shared by the mail plugin and the doveadm module. */
int migrate_user_settings_read(struct mail_user *user, bool require_source,
			       const struct migrate_settings **set_r,
			       const char **error_r);

void migrate_plugin_init(struct module *module);
void migrate_plugin_deinit(void);

#endif
