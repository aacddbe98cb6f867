/*  cluster.c: the cluster's metadata in ZooKeeper, read into immutable
    views, and the operator actions `cluster create` and `cluster status`.

    DESIGN
    1.  The layout under PATH (docs/cluster.md): id, config, map (its znode
        version is map_version), groups/<g> ({leader, epoch, isr}, changed
        only by compare-and-set on its version), nodes/<id> (ephemeral,
        the node's registration).
    2.  Every znode's text is untrusted: it is parsed with jansson and
        checked field by field, and a malformed one is an error naming the
        znode, never a crash. A malformed node registration is left out of
        the view (one bad node must not hide the cluster); a malformed id,
        config, map or group state fails the whole read.
    3.  A view is built once and never changed after it is handed out; its
        strings live in one arena, its arrays are single allocations, and a
        reference count (atomic) frees it with the last release.
    4.  `create` claims PATH by creating `config` in its first transaction
        (a second create fails there) and writes `id` last, so a cluster
        "exists" (id present) only once every group znode is there. Groups
        go in transactions of at most S_CREATE_BATCH znodes, under
        ZooKeeper's 1 MB request limit.
*/
#include "zcq_cluster_impl.h"
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define S_CREATE_BATCH 1000
#define S_ISR_MAX      64

typedef struct {
    zcq_cluster_view_t view; //  first: a view's address is the holder's
    atomic_int refs;
    zcq_arena_t *strings;
    uint16_t *slot_group;
    zcq_slot_range_t *ranges;
    zcq_cluster_group_t *groups;
    zcq_cluster_node_t *nodes;
    const char **isr;                    //  every group's, one after another
    const zcq_cluster_node_t **replicas; //  likewise
} s_view_t;

bool
zcq_cluster_node_id_ok (const char *node)
{
    size_t len = node ? strlen (node) : 0;
    if (len == 0 || len > ZCQ_NODE_ID_MAX || streq (node, ".") || streq (node, ".."))
        return false;
    for (size_t at = 0; at < len; at++) {
        char ch = node[at];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Views

void
zcq_cluster_view_release (zcq_cluster_view_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_view_t *holder = (s_view_t *) *self_p;
    *self_p = NULL;
    if (atomic_fetch_sub (&holder->refs, 1) != 1)
        return;
    zcq_arena_destroy (&holder->strings);
    free (holder->slot_group);
    free (holder->ranges);
    free (holder->groups);
    free (holder->nodes);
    free (holder->isr);
    free (holder->replicas);
    free (holder);
}

zcq_cluster_view_t *
zcq_cluster_view_ref (zcq_cluster_view_t *self)
{
    if (self)
        atomic_fetch_add (&((s_view_t *) self)->refs, 1);
    return self;
}

int
zcq_cluster_view_group_of (const zcq_cluster_view_t *self, const char *stream, size_t len)
{
    return self->slot_group[zcq_slot_of (stream, len, self->slots)];
}

const zcq_cluster_node_t *
zcq_cluster_view_node (const zcq_cluster_view_t *self, const char *node)
{
    for (size_t index = 0; node && index < self->node_count; index++)
        if (streq (self->nodes[index].node, node))
            return &self->nodes[index];
    return NULL;
}

const char *
zcq_cluster_view_leader (const zcq_cluster_view_t *self, int group)
{
    if (group < 0 || (size_t) group >= self->group_count)
        return NULL;
    const zcq_cluster_node_t *leader = zcq_cluster_view_node (self, self->groups[group].leader);
    return leader ? leader->command : NULL;
}

static void
s_write_str_or_nil (zcq_writer_t *writer, const char *text)
{
    if (text)
        zcq_writer_str (writer, text);
    else
        zcq_writer_nil (writer);
}

size_t
zcq_cluster_view_encode (const zcq_cluster_view_t *self, zcq_writer_t *writer,
                         const zcq_cluster_hw_t *hw)
{
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, self->id);
    zcq_writer_str (writer, "slots");
    zcq_writer_uint (writer, self->slots);
    zcq_writer_str (writer, "map_version");
    zcq_writer_int (writer, self->map_version);
    zcq_writer_str (writer, "map");
    zcq_writer_array (writer, self->range_count);
    for (size_t index = 0; index < self->range_count; index++) {
        zcq_writer_array (writer, 3);
        zcq_writer_uint (writer, self->ranges[index].first);
        zcq_writer_uint (writer, self->ranges[index].last);
        zcq_writer_int (writer, self->ranges[index].group);
    }
    zcq_writer_str (writer, "groups");
    zcq_writer_array (writer, self->group_count);
    for (size_t index = 0; index < self->group_count; index++) {
        const zcq_cluster_group_t *group = &self->groups[index];
        zcq_writer_map (writer, 6);
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, group->group);
        zcq_writer_str (writer, "epoch");
        zcq_writer_uint (writer, group->epoch);
        zcq_writer_str (writer, "leader");
        s_write_str_or_nil (writer, group->leader);
        zcq_writer_str (writer, "isr");
        zcq_writer_array (writer, group->isr_count);
        for (size_t member = 0; member < group->isr_count; member++)
            zcq_writer_str (writer, group->isr[member]);
        zcq_writer_str (writer, "hw");
        zcq_writer_uint (writer, hw && hw->hw ? hw->hw (hw->arg, group->group) : 0);
        zcq_writer_str (writer, "replicas");
        zcq_writer_array (writer, group->replica_count);
        for (size_t member = 0; member < group->replica_count; member++) {
            const zcq_cluster_node_t *replica = group->replicas[member];
            zcq_writer_map (writer, 6);
            zcq_writer_str (writer, "node");
            zcq_writer_str (writer, replica->node);
            zcq_writer_str (writer, "role");
            zcq_writer_str (writer, replica->role);
            zcq_writer_str (writer, "command");
            zcq_writer_str (writer, replica->command);
            zcq_writer_str (writer, "events");
            zcq_writer_str (writer, replica->events);
            zcq_writer_str (writer, "query");
            zcq_writer_str (writer, replica->query);
            zcq_writer_str (writer, "position");
            zcq_writer_uint (writer, hw && hw->position
                                         ? hw->position (hw->arg, group->group, replica->node)
                                         : 0);
        }
    }
    zcq_writer_str (writer, "nodes");
    zcq_writer_array (writer, self->node_count);
    for (size_t index = 0; index < self->node_count; index++) {
        const zcq_cluster_node_t *node = &self->nodes[index];
        zcq_writer_map (writer, 7);
        zcq_writer_str (writer, "node");
        zcq_writer_str (writer, node->node);
        zcq_writer_str (writer, "group");
        if (node->group >= 0)
            zcq_writer_int (writer, node->group);
        else
            zcq_writer_nil (writer);
        zcq_writer_str (writer, "role");
        zcq_writer_str (writer, node->role);
        zcq_writer_str (writer, "command");
        zcq_writer_str (writer, node->command);
        zcq_writer_str (writer, "events");
        zcq_writer_str (writer, node->events);
        zcq_writer_str (writer, "query");
        zcq_writer_str (writer, node->query);
        zcq_writer_str (writer, "replication");
        s_write_str_or_nil (writer, node->replication);
    }
    return 6;
}

//  The role a node plays, from its registration and its group's state.
static const char *
s_role_of (const zcq_cluster_view_t *view, const char *node, int group, bool views)
{
    if (views || group < 0)
        return "views";
    if ((size_t) group < view->group_count && view->groups[group].leader
        && streq (view->groups[group].leader, node))
        return "leader";
    return "follower";
}

void
zcq_cluster_view_set_self (zcq_cluster_view_t *self, const char *node, int group, bool views,
                           uint64_t epoch, uint64_t generation)
{
    s_view_t *holder = (s_view_t *) self;
    self->node = zcq_arena_strndup (holder->strings, node, strlen (node));
    self->group = views ? -1 : group;
    //  the node leads only under the epoch it won, whatever the state says
    self->role = views || group < 0 ? "views" : epoch ? "leader" : "follower";
    self->epoch = epoch;
    self->generation = generation;
}

//  --------------------------------------------------------------------------
//  Parsing the znodes (DESIGN 2)

static json_t *
s_parse (const char *text, const char *znode, char *error, size_t size)
{
    json_error_t reason;
    json_t *json = text ? json_loads (text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &reason)
                        : NULL;
    if (!json)
        snprintf (error, size, "%s is not JSON: %s", znode, text ? reason.text : "no data");
    return json;
}

//  An integer member in min..max.
static bool
s_member_int (const json_t *object, const char *name, json_int_t min, json_int_t max,
              json_int_t *value)
{
    const json_t *member = json_object_get (object, name);
    if (!json_is_integer (member))
        return false;
    *value = json_integer_value (member);
    return *value >= min && *value <= max;
}

//  A string member that is one line of at most max bytes (endpoints).
static const char *
s_member_text (const json_t *object, const char *name, size_t max)
{
    const json_t *member = json_object_get (object, name);
    if (!json_is_string (member))
        return NULL;
    const char *text = json_string_value (member);
    size_t len = json_string_length (member);
    if (len == 0 || len > max || strlen (text) != len)
        return NULL;
    for (size_t at = 0; at < len; at++)
        if ((unsigned char) text[at] < 0x20 || text[at] == 0x7f)
            return NULL;
    return text;
}

static zcq_err_t
s_parse_config (s_view_t *holder, const char *text, const char *path, char *error, size_t size)
{
    char znode[ZCQ_ZK_PATH_MAX + 16];
    snprintf (znode, sizeof znode, "%s/config", path);
    json_t *json = s_parse (text, znode, error, size);
    if (!json)
        return ZCQ_CORRUPT;
    json_int_t slots, groups, replicas, min_insync;
    bool ok = json_is_object (json)
           && s_member_int (json, "slots", 1, ZCQ_CLUSTER_SLOTS_MAX, &slots)
           && s_member_int (json, "groups", 1, slots, &groups)
           && s_member_int (json, "replicas", 1, ZCQ_CLUSTER_REPLICAS_MAX, &replicas)
           && s_member_int (json, "min_insync", 1, replicas, &min_insync);
    json_decref (json);
    if (!ok) {
        snprintf (error, size,
                  "%s is not {slots: 1..16384, groups: 1..slots, replicas: 1..9, "
                  "min_insync: 1..replicas}",
                  znode);
        return ZCQ_CORRUPT;
    }
    holder->view.slots = (uint32_t) slots;
    holder->view.group_count = (size_t) groups;
    holder->view.replicas = (int) replicas;
    holder->view.min_insync = (int) min_insync;
    return ZCQ_OK;
}

static int
s_range_order (const void *left, const void *right)
{
    const zcq_slot_range_t *a = left, *b = right;
    return a->first < b->first ? -1 : a->first > b->first;
}

static zcq_err_t
s_parse_map (s_view_t *holder, const char *text, const char *path, char *error, size_t size)
{
    char znode[ZCQ_ZK_PATH_MAX + 16];
    snprintf (znode, sizeof znode, "%s/map", path);
    json_t *json = s_parse (text, znode, error, size);
    if (!json)
        return ZCQ_CORRUPT;
    zcq_cluster_view_t *view = &holder->view;
    size_t count = json_array_size (json);
    zcq_err_t err = ZCQ_OK;
    if (!json_is_array (json) || count == 0 || count > view->slots) {
        snprintf (error, size, "%s is not a list of 1 to %u [first, last, group] ranges", znode,
                  view->slots);
        err = ZCQ_CORRUPT;
    }
    if (err == ZCQ_OK) {
        holder->ranges = calloc (count, sizeof (zcq_slot_range_t));
        holder->slot_group = malloc (view->slots * sizeof (uint16_t));
        if (!holder->ranges || !holder->slot_group) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
        else
            memset (holder->slot_group, 0xff, view->slots * sizeof (uint16_t));
    }
    for (size_t index = 0; err == ZCQ_OK && index < count; index++) {
        const json_t *range = json_array_get (json, index);
        const json_t *first = json_array_get (range, 0), *last = json_array_get (range, 1),
                     *group = json_array_get (range, 2);
        if (json_array_size (range) != 3 || !json_is_integer (first) || !json_is_integer (last)
            || !json_is_integer (group) || json_integer_value (first) < 0
            || json_integer_value (first) > json_integer_value (last)
            || json_integer_value (last) >= view->slots || json_integer_value (group) < 0
            || json_integer_value (group) >= (json_int_t) view->group_count) {
            snprintf (error, size,
                      "%s: range %zu is not [first, last, group] with 0 <= first <= last < %u "
                      "and 0 <= group < %zu",
                      znode, index, view->slots, view->group_count);
            err = ZCQ_CORRUPT;
            break;
        }
        zcq_slot_range_t *slot_range = &holder->ranges[index];
        *slot_range = (zcq_slot_range_t) { (uint32_t) json_integer_value (first),
                                           (uint32_t) json_integer_value (last),
                                           (int) json_integer_value (group) };
        for (uint32_t slot = slot_range->first; err == ZCQ_OK && slot <= slot_range->last; slot++)
            if (holder->slot_group[slot] != 0xffff) {
                snprintf (error, size, "%s: slot %u is in two ranges", znode, slot);
                err = ZCQ_CORRUPT;
            }
            else
                holder->slot_group[slot] = (uint16_t) slot_range->group;
    }
    for (uint32_t slot = 0; err == ZCQ_OK && slot < view->slots; slot++)
        if (holder->slot_group[slot] == 0xffff) {
            snprintf (error, size, "%s: slot %u is in no range", znode, slot);
            err = ZCQ_CORRUPT;
        }
    json_decref (json);
    if (err == ZCQ_OK) {
        qsort (holder->ranges, count, sizeof (zcq_slot_range_t), s_range_order);
        view->range_count = count;
        view->ranges = holder->ranges;
        view->slot_group = holder->slot_group;
    }
    return err;
}

static const char *
s_keep (s_view_t *holder, const char *text)
{
    return zcq_arena_strndup (holder->strings, text, strlen (text));
}

//  groups/<g>: {leader: id or null, epoch: n, isr: [id, ...]}; the isr
//  pointers go to holder->isr from *isr_used on.
static zcq_err_t
s_parse_group (s_view_t *holder, int group, const char *text, const char *path, size_t *isr_used,
               char *error, size_t size)
{
    char znode[ZCQ_ZK_PATH_MAX + 32];
    snprintf (znode, sizeof znode, "%s/groups/%d", path, group);
    json_t *json = s_parse (text, znode, error, size);
    if (!json)
        return ZCQ_CORRUPT;
    zcq_cluster_group_t *state = &holder->groups[group];
    const json_t *leader = json_object_get (json, "leader");
    const json_t *isr = json_object_get (json, "isr");
    json_int_t epoch;
    bool ok = json_is_object (json) && s_member_int (json, "epoch", 0, INT64_MAX, &epoch)
           && (json_is_null (leader)
               || (json_is_string (leader) && zcq_cluster_node_id_ok (json_string_value (leader))))
           && json_is_array (isr) && json_array_size (isr) <= S_ISR_MAX;
    for (size_t index = 0; ok && index < json_array_size (isr); index++) {
        const json_t *member = json_array_get (isr, index);
        ok = json_is_string (member) && zcq_cluster_node_id_ok (json_string_value (member));
    }
    zcq_err_t err = ZCQ_OK;
    if (!ok) {
        snprintf (error, size,
                  "%s is not {leader: node id or null, epoch: n >= 0, isr: [node id, ...]}", znode);
        err = ZCQ_CORRUPT;
    }
    else {
        state->group = group;
        state->epoch = (uint64_t) epoch;
        state->leader = json_is_string (leader) ? s_keep (holder, json_string_value (leader))
                                                : NULL;
        state->isr = holder->isr + *isr_used;
        state->isr_count = json_array_size (isr);
        for (size_t index = 0; index < state->isr_count; index++)
            holder->isr[(*isr_used)++]
                = s_keep (holder, json_string_value (json_array_get (isr, index)));
    }
    json_decref (json);
    return err;
}

//  nodes/<name>: the registration; false (a warning) when it is malformed.
static bool
s_parse_node (s_view_t *holder, const char *name, const char *text, const char *path,
              zcq_cluster_node_t *node)
{
    char reason[256];
    json_t *json = s_parse (text, name, reason, sizeof reason);
    const json_t *group = json_object_get (json, "group");
    const char *role = s_member_text (json, "role", 16);
    const char *id = s_member_text (json, "node", ZCQ_NODE_ID_MAX);
    const char *command = s_member_text (json, "command", 255);
    const char *events = s_member_text (json, "events", 255);
    const char *query = s_member_text (json, "query", 255);
    const char *replication = s_member_text (json, "replication", 255);
    const json_t *replication_value = json_object_get (json, "replication");
    bool views = role && streq (role, "views");
    bool ok = json_is_object (json) && id && streq (id, name) && role
           && (views || streq (role, "replica")) && command && events && query
           && (replication || !replication_value || json_is_null (replication_value))
           && (views ? json_is_null (group) || !group
                     : json_is_integer (group) && json_integer_value (group) >= 0
                           && json_integer_value (group) < (json_int_t) holder->view.group_count);
    if (ok) {
        *node = (zcq_cluster_node_t) {
            .node = s_keep (holder, id),
            .group = views ? -1 : (int) json_integer_value (group),
            .command = s_keep (holder, command),
            .events = s_keep (holder, events),
            .query = s_keep (holder, query),
            .replication = replication ? s_keep (holder, replication) : NULL,
        };
        ok = node->node && node->command && node->events && node->query
          && (!replication || node->replication);
    }
    else
        zsys_warning ("cluster: %s/nodes/%s is not a node registration: left out", path, name);
    json_decref (json);
    return ok;
}

static int
s_node_order (const void *left, const void *right)
{
    return strcmp (((const zcq_cluster_node_t *) left)->node,
                   ((const zcq_cluster_node_t *) right)->node);
}

zcq_err_t
zcq_cluster_view_build (const zcq_cluster_texts_t *texts, zcq_cluster_view_t **view_p, char *error,
                        size_t size)
{
    *view_p = NULL;
    const char *path = texts->path ? texts->path : "";
    s_view_t *holder = calloc (1, sizeof (s_view_t));
    if (!holder || !(holder->strings = zcq_arena_new ())) {
        free (holder);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    atomic_init (&holder->refs, 1);
    zcq_cluster_view_t *view = &holder->view;
    view->group = -1;
    zcq_err_t err = ZCQ_OK;
    //  the id: hex, 8 to 64 digits
    size_t id_len = texts->id ? strlen (texts->id) : 0;
    bool id_ok = id_len >= 8 && id_len <= 64;
    for (size_t at = 0; id_ok && at < id_len; at++)
        id_ok = strchr ("0123456789abcdef", texts->id[at]) != NULL;
    if (!id_ok) {
        snprintf (error, size, "%s/id is not a cluster id (8 to 64 hex digits)", path);
        err = ZCQ_CORRUPT;
    }
    else
        view->id = s_keep (holder, texts->id);
    if (err == ZCQ_OK)
        err = s_parse_config (holder, texts->config, path, error, size);
    if (err == ZCQ_OK)
        err = s_parse_map (holder, texts->map, path, error, size);
    view->map_version = texts->map_version;
    if (err == ZCQ_OK && texts->group_count < view->group_count) {
        snprintf (error, size, "%s/groups holds %zu groups, the config %zu", path,
                  texts->group_count, view->group_count);
        err = ZCQ_CORRUPT;
    }
    if (err == ZCQ_OK) {
        holder->groups = calloc (view->group_count, sizeof (zcq_cluster_group_t));
        holder->isr = calloc (view->group_count * S_ISR_MAX, sizeof (char *));
        holder->nodes = calloc (texts->node_count + 1, sizeof (zcq_cluster_node_t));
        holder->replicas = calloc (texts->node_count + 1, sizeof (zcq_cluster_node_t *));
        if (!holder->groups || !holder->isr || !holder->nodes || !holder->replicas) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
    }
    size_t isr_used = 0;
    for (size_t group = 0; err == ZCQ_OK && group < view->group_count; group++) {
        err = s_parse_group (holder, (int) group, texts->groups[group], path, &isr_used, error,
                             size);
        holder->groups[group].version = texts->group_versions[group];
    }
    //  the live nodes, by id; each group's replicas point into them
    for (size_t index = 0; err == ZCQ_OK && index < texts->node_count; index++)
        if (s_parse_node (holder, texts->node_names[index], texts->nodes[index], path,
                          &holder->nodes[view->node_count]))
            view->node_count++;
    if (err == ZCQ_OK) {
        view->groups = holder->groups;
        qsort (holder->nodes, view->node_count, sizeof (zcq_cluster_node_t), s_node_order);
        view->nodes = holder->nodes;
        size_t used = 0;
        for (size_t group = 0; group < view->group_count; group++) {
            holder->groups[group].replicas = holder->replicas + used;
            for (size_t index = 0; index < view->node_count; index++)
                if (holder->nodes[index].group == (int) group) {
                    holder->replicas[used++] = &holder->nodes[index];
                    holder->groups[group].replica_count++;
                }
        }
        for (size_t index = 0; index < view->node_count; index++) {
            zcq_cluster_node_t *node = &holder->nodes[index];
            node->role = s_role_of (view, node->node, node->group, node->group < 0);
        }
        *view_p = view;
        return ZCQ_OK;
    }
    zcq_cluster_view_t *failed = view;
    zcq_cluster_view_release (&failed);
    return err;
}

//  --------------------------------------------------------------------------
//  Reading the znodes

zcq_err_t
zcq_cluster_load (zcq_zk_t *zk, bool watch, zcq_cluster_view_t **view_p, char *error, size_t size)
{
    *view_p = NULL;
    zcq_cluster_texts_t texts = { .path = zcq_zk_path (zk) };
    char *id = NULL, *config = NULL, *map = NULL;
    char **groups = NULL, **node_names = NULL, **nodes = NULL;
    int32_t *group_versions = NULL;
    zcq_zk_stat_t stat = { 0 };
    zcq_err_t err = zcq_zk_get (zk, "id", 0, &id, NULL, NULL, error, size);
    if (err == ZCQ_NOT_FOUND)
        snprintf (error, size, "no cluster at %s: run `zcqrs cluster create`", zcq_zk_path (zk));
    if (err == ZCQ_OK)
        err = zcq_zk_get (zk, "config", 0, &config, NULL, NULL, error, size);
    if (err == ZCQ_OK)
        err = zcq_zk_get (zk, "map", watch ? ZCQ_ZK_MAP : 0, &map, NULL, &stat, error, size);
    if (err == ZCQ_OK)
        texts.map_version = stat.version;
    //  the group count comes from the config; a bad config fails in build
    json_t *json = config ? json_loads (config, 0, NULL) : NULL;
    json_int_t group_count = json_integer_value (json_object_get (json, "groups"));
    json_decref (json);
    if (group_count < 0 || group_count > ZCQ_CLUSTER_SLOTS_MAX)
        group_count = 0;
    if (err == ZCQ_OK) {
        groups = calloc ((size_t) group_count + 1, sizeof (char *));
        group_versions = calloc ((size_t) group_count + 1, sizeof (int32_t));
        if (!groups || !group_versions) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
    }
    for (json_int_t group = 0; err == ZCQ_OK && group < group_count; group++) {
        char path[32];
        snprintf (path, sizeof path, "groups/%d", (int) group);
        err = zcq_zk_get (zk, path, watch ? ZCQ_ZK_GROUPS : 0, &groups[group], NULL, &stat, error,
                          size);
        group_versions[group] = stat.version;
        texts.group_count++;
    }
    if (err == ZCQ_OK)
        err = zcq_zk_children (zk, "nodes", watch ? ZCQ_ZK_NODES : 0, &node_names, error, size);
    size_t node_count = 0;
    while (node_names && node_names[node_count])
        node_count++;
    if (err == ZCQ_OK && !(nodes = calloc (node_count + 1, sizeof (char *)))) {
        snprintf (error, size, "out of memory");
        err = ZCQ_NOMEM;
    }
    size_t live = 0;
    for (size_t index = 0; err == ZCQ_OK && index < node_count; index++) {
        char path[32 + ZCQ_ZK_PATH_MAX];
        snprintf (path, sizeof path, "nodes/%s", node_names[index]);
        err = zcq_zk_get (zk, path, 0, &nodes[live], NULL, NULL, error, size);
        if (err == ZCQ_NOT_FOUND)
            err = ZCQ_OK; //  gone since the list: not live
        else if (err == ZCQ_OK) {
            //  keep names and texts side by side
            char *name = node_names[live];
            node_names[live] = node_names[index];
            node_names[index] = name;
            live++;
        }
    }
    if (err == ZCQ_OK) {
        texts.id = id;
        texts.config = config;
        texts.map = map;
        texts.groups = (const char *const *) groups;
        texts.group_versions = group_versions;
        texts.node_count = live;
        texts.node_names = (const char *const *) node_names;
        texts.nodes = (const char *const *) nodes;
        char reason[512];
        err = zcq_cluster_view_build (&texts, view_p, reason, sizeof reason);
        if (err != ZCQ_OK)
            snprintf (error, size, "the cluster at %s is damaged: %s", zcq_zk_path (zk), reason);
    }
    free (id);
    free (config);
    free (map);
    for (json_int_t group = 0; groups && group < group_count; group++)
        free (groups[group]);
    free (groups);
    free (group_versions);
    for (size_t index = 0; nodes && index < node_count; index++)
        free (nodes[index]);
    free (nodes);
    zcq_zk_names_free (&node_names);
    return err;
}

//  --------------------------------------------------------------------------
//  The JSON a node writes

char *
zcq_cluster_group_json (const char *leader, uint64_t epoch, const char *const *isr,
                        size_t isr_count)
{
    json_t *members = json_array ();
    for (size_t index = 0; members && index < isr_count; index++)
        json_array_append_new (members, json_string (isr[index]));
    json_t *json = json_pack ("{s:o, s:I, s:o}", "leader",
                              leader ? json_string (leader) : json_null (), "epoch",
                              (json_int_t) epoch, "isr", members ? members : json_array ());
    char *text = json ? json_dumps (json, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref (json);
    return text;
}

char *
zcq_cluster_node_json (const zcq_cluster_registration_t *node)
{
    json_t *json = json_pack (
        "{s:s, s:o, s:s, s:s, s:s, s:s, s:o}", "node", node->node, "group",
        node->group >= 0 ? json_integer (node->group) : json_null (), "role", node->role, "command",
        node->command, "events", node->events, "query", node->query, "replication",
        node->replication && *node->replication ? json_string (node->replication) : json_null ());
    char *text = json ? json_dumps (json, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref (json);
    return text;
}

//  --------------------------------------------------------------------------
//  Operator actions

static zcq_err_t
s_session (zcq_zk_t **zk_p, const char *zk, int timeout_ms, char *error, size_t size)
{
    ZCQ_TRY (zcq_zk_new (zk_p, zk, timeout_ms > 4000 ? timeout_ms : 4000, error, size));
    zcq_err_t err = zcq_zk_wait_connected (*zk_p, timeout_ms, error, size);
    if (err != ZCQ_OK)
        zcq_zk_destroy (zk_p);
    return err;
}

zcq_err_t
zcq_cluster_create (const char *zk, const zcq_cluster_config_t *config, int timeout_ms, char *error,
                    size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    if (config->slots < 1 || config->slots > ZCQ_CLUSTER_SLOTS_MAX || config->groups < 1
        || (uint32_t) config->groups > config->slots || config->replicas < 1
        || config->replicas > ZCQ_CLUSTER_REPLICAS_MAX || config->min_insync < 1
        || config->min_insync > config->replicas) {
        snprintf (error, size,
                  "a cluster needs slots 1..16384, groups 1..slots, replicas 1..9 and "
                  "min-insync 1..replicas");
        return ZCQ_INVALID;
    }
    zcq_zk_t *session;
    ZCQ_TRY (s_session (&session, zk, timeout_ms, error, size));
    const char *path = zcq_zk_path (session);
    zcq_err_t err = zcq_zk_create_root (session, error, size);
    zcq_zk_stat_t stat;
    if (err == ZCQ_OK && zcq_zk_exists (session, "id", &stat, error, size) == ZCQ_OK) {
        snprintf (error, size, "a cluster already exists at %s", path);
        err = ZCQ_CONFLICT;
    }
    //  the id: 16 random bytes in hex
    uint8_t random[16];
    char id[33];
    if (err == ZCQ_OK && getrandom (random, sizeof random, 0) != (ssize_t) sizeof random) {
        snprintf (error, size, "no random bytes for the cluster id");
        err = ZCQ_INTERNAL;
    }
    for (size_t index = 0; index < sizeof random; index++)
        snprintf (id + index * 2, 3, "%02x", random[index]);
    char *config_text = NULL, *map_text = NULL, *group_text = NULL;
    zcq_slot_range_t *ranges = calloc ((size_t) config->groups, sizeof (zcq_slot_range_t));
    json_t *map = json_array ();
    if (err == ZCQ_OK && (!ranges || !map)) {
        snprintf (error, size, "out of memory");
        err = ZCQ_NOMEM;
    }
    if (err == ZCQ_OK) {
        zcq_slot_map_even (config->slots, config->groups, ranges);
        for (int group = 0; group < config->groups; group++)
            json_array_append_new (map, json_pack ("[I, I, i]", (json_int_t) ranges[group].first,
                                                   (json_int_t) ranges[group].last, group));
        json_t *settings = json_pack ("{s:I, s:i, s:i, s:i}", "slots", (json_int_t) config->slots,
                                      "groups", config->groups, "replicas", config->replicas,
                                      "min_insync", config->min_insync);
        config_text = settings ? json_dumps (settings, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref (settings);
        map_text = json_dumps (map, JSON_COMPACT);
        group_text = zcq_cluster_group_json (NULL, 0, NULL, 0);
        if (!config_text || !map_text || !group_text) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
    }
    //  DESIGN 4: config first (the claim), the groups in batches, id last
    zcq_zk_op_t *ops = calloc (S_CREATE_BATCH + 5, sizeof (zcq_zk_op_t));
    char (*paths)[32] = calloc (S_CREATE_BATCH, sizeof *paths);
    if (err == ZCQ_OK && (!ops || !paths)) {
        snprintf (error, size, "out of memory");
        err = ZCQ_NOMEM;
    }
    for (int group = 0, batch = 0; err == ZCQ_OK && group <= config->groups; batch++) {
        size_t count = 0;
        if (batch == 0) {
            ops[count++] = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, "config", config_text,
                                           strlen (config_text), -1 };
            ops[count++]
                = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, "map", map_text, strlen (map_text), -1 };
            ops[count++] = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, "groups", NULL, 0, -1 };
            ops[count++] = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, "nodes", NULL, 0, -1 };
        }
        for (size_t slot = 0; group < config->groups && slot < S_CREATE_BATCH; slot++, group++) {
            snprintf (paths[slot], sizeof paths[slot], "groups/%d", group);
            ops[count++] = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, paths[slot], group_text,
                                           strlen (group_text), -1 };
        }
        if (group == config->groups) {
            ops[count++] = (zcq_zk_op_t) { ZCQ_ZK_OP_CREATE, "id", id, strlen (id), -1 };
            group++; //  done after this batch
        }
        err = zcq_zk_multi (session, ops, count, error, size);
        if (err == ZCQ_CONFLICT && batch == 0)
            snprintf (error, size,
                      "%s holds part of a cluster (a config without an id: an earlier create "
                      "stopped half way, or one is running): remove it or choose another path",
                      path);
    }
    free (ops);
    free (paths);
    free (ranges);
    json_decref (map);
    free (config_text);
    free (map_text);
    free (group_text);
    zcq_zk_destroy (&session);
    return err;
}

zcq_err_t
zcq_cluster_status (const char *zk, int timeout_ms, zcq_cluster_view_t **view_p, char *error,
                    size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    *view_p = NULL;
    zcq_zk_t *session;
    ZCQ_TRY (s_session (&session, zk, timeout_ms, error, size));
    zcq_err_t err = zcq_cluster_load (session, false, view_p, error, size);
    zcq_zk_destroy (&session);
    return err;
}
