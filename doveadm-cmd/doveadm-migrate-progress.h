#ifndef DOVEADM_MIGRATE_PROGRESS_H
#define DOVEADM_MIGRATE_PROGRESS_H

#include "migrate-dest.h"

/* Progress lines on stderr for the engine's progress callback: on a
   terminal one line redrawn every second, in a log a line now and then. */
struct migrate_cmd_progress {
	struct timeval last;
	bool tty, printed;
};

void migrate_cmd_progress_init(struct migrate_cmd_progress *progress);
/* A migrate_progress_callback_t: context is a struct
   migrate_cmd_progress. */
void migrate_cmd_progress_show(const struct migrate_progress *progress,
			       void *context);
/* Ends the redrawn line, if one was drawn. */
void migrate_cmd_progress_finish(struct migrate_cmd_progress *progress);

#endif
