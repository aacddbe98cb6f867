/*  event.c: a recorded event, read where it lies. Every event a view host
    applies passes through here, so reading one decodes nothing into a
    document and allocates nothing.

    DESIGN
    1.  The layout of a stored event (ZCQ/1 section 4) is stated once, in
        s_layout: a map of ZCQ_EVENT_FIELDS entries in that order, position
        and time first at fixed width so that the log writer can stamp them
        in place (ZCQ_EVENT_* in zcq_internal.h; the aggregate shard writes
        it). The reader does not rely on the order: it takes the entries in
        any order and looks each name up, the layout only makes its first
        guess right.
    2.  zcq_event_read makes one pass over the body. Every entry is
        bounds-checked and skipped by its structure (no more containers
        open at once than msgpack-c can decode, ZCQ_MP_DEPTH_MAX, nothing
        after the map); the header fields are copied out (short, NUL-terminated) and
        where `data` and `meta` lie is recorded. A body that breaks any of
        that, or lacks a header field, or has one of the wrong type, is
        corrupt as a whole, as it was when bodies were decoded first.
    3.  Payload reads (zcq_event_int, zcq_event_str) find the field in
        `data` where it lies. zcq_event_body, _data and _meta, for handlers
        that want zcq_value_t, decode the body on their first call (into a
        document the event keeps and reuses).
    4.  Every read is bounded by the bytes given: bodies come from the log
        on disk and, in catch-up subscriptions, from the network. The
        content rules of the codec (valid UTF-8, no repeated key) are not
        checked here: a reader of untrusted bytes checks them first with
        zcq_msgpack_check.
    5.  An event filled by zcq_event_parse from a decoded body (the
        aggregate shard's evolve) answers every accessor from that body.
    6.  An event of a type past its first version carries event_version
        (absent: 1). Before a handler sees an older one, zcq_event_upcast
        runs the type's upcaster once per version, each time writing a
        new body (the old one's entries but data and event_version, then
        the new ones) into one of two writers the event keeps, and reading
        the event again from it: the handler sees the current version,
        read in place like any other event.
*/
#include "zcq_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  MessagePack, read in place

bool
zcq_mp_read (zcq_mp_t *reader, zcq_mp_item_t *item)
{
    const uint8_t *at = reader->cursor;
    if (at >= reader->end)
        return false;
    size_t left = (size_t) (reader->end - at);
    uint8_t tag = at[0];
    size_t header = 1;   //  bytes before the payload
    uint64_t length = 0; //  payload bytes (str, bin, ext, numbers)
    item->big = false;
    item->single = false;
    if (tag <= 0x7f || tag >= 0xe0) {
        item->type = ZCQ_TYPE_INT;
        item->as.i = (int8_t) tag;
        reader->cursor = at + 1;
        return true;
    }
    if ((tag & 0xe0) == 0xa0) {
        item->type = ZCQ_TYPE_STR;
        length = tag & 0x1f;
    }
    else if ((tag & 0xf0) == 0x80 || (tag & 0xf0) == 0x90) {
        item->type = (tag & 0xf0) == 0x80 ? ZCQ_TYPE_MAP : ZCQ_TYPE_ARRAY;
        item->len = tag & 0x0f;
        reader->cursor = at + 1;
        return true;
    }
    else {
        //  the width of what follows the tag: a length, a count or a number
        int width = 0;
        switch (tag) {
            case 0xc0: item->type = ZCQ_TYPE_NIL; break;
            case 0xc2:
            case 0xc3:
                item->type = ZCQ_TYPE_BOOL;
                item->as.b = tag == 0xc3;
                break;
            case 0xc4:
            case 0xc5:
            case 0xc6:
                item->type = ZCQ_TYPE_BIN;
                width = 1 << (tag - 0xc4);
                break;
            case 0xc7:
            case 0xc8:
            case 0xc9:
                item->type = ZCQ_TYPE_EXT;
                width = 1 << (tag - 0xc7);
                break;
            case 0xca:
            case 0xcb: item->type = ZCQ_TYPE_FLOAT; break;
            case 0xcc:
            case 0xcd:
            case 0xce:
            case 0xcf:
            case 0xd0:
            case 0xd1:
            case 0xd2:
            case 0xd3: item->type = ZCQ_TYPE_INT; break;
            case 0xd4:
            case 0xd5:
            case 0xd6:
            case 0xd7:
            case 0xd8: item->type = ZCQ_TYPE_EXT; break;
            case 0xd9:
            case 0xda:
            case 0xdb:
                item->type = ZCQ_TYPE_STR;
                width = 1 << (tag - 0xd9);
                break;
            case 0xdc:
            case 0xdd:
                item->type = ZCQ_TYPE_ARRAY;
                width = tag == 0xdc ? 2 : 4;
                break;
            case 0xde:
            case 0xdf:
                item->type = ZCQ_TYPE_MAP;
                width = tag == 0xde ? 2 : 4;
                break;
            default: return false; //  0xc1, never used
        }
        if (width) {
            if (left < 1 + (size_t) width)
                return false;
            uint64_t value = 0;
            for (int index = 1; index <= width; index++)
                value = value << 8 | at[index];
            header += (size_t) width;
            if (item->type == ZCQ_TYPE_ARRAY || item->type == ZCQ_TYPE_MAP) {
                item->len = (uint32_t) value;
                reader->cursor = at + header;
                return true;
            }
            length = value;
        }
        if (item->type == ZCQ_TYPE_EXT) {
            //  a type byte, then the data (fixext: 1 << (tag - 0xd4) bytes)
            if (tag >= 0xd4)
                length = 1u << (tag - 0xd4);
            if (left < header + 1)
                return false;
            item->ext = (int8_t) at[header];
            header += 1;
        }
        else if (item->type == ZCQ_TYPE_FLOAT || item->type == ZCQ_TYPE_INT) {
            int bytes = tag == 0xca ? 4 : tag == 0xcb ? 8 : 1 << ((tag - 0xcc) & 3);
            if (left < 1 + (size_t) bytes)
                return false;
            uint64_t bits = 0;
            for (int index = 1; index <= bytes; index++)
                bits = bits << 8 | at[index];
            if (tag == 0xca) {
                uint32_t single_bits = (uint32_t) bits;
                float single;
                memcpy (&single, &single_bits, 4);
                item->as.f = single;
                item->single = true;
            }
            else if (tag == 0xcb)
                memcpy (&item->as.f, &bits, 8);
            else if (tag >= 0xd0) {
                //  signed: sign-extend from its width
                int shift = 64 - 8 * bytes;
                item->as.i = (int64_t) (bits << shift) >> shift;
            }
            else if (bits > INT64_MAX) {
                item->big = true;
                item->as.u = bits;
            }
            else
                item->as.i = (int64_t) bits;
            reader->cursor = at + 1 + bytes;
            return true;
        }
    }
    if (length > left - header)
        return false;
    item->bytes = at + header;
    item->len = (uint32_t) length;
    reader->cursor = at + header + length;
    return true;
}

//  zcq_mp_read with the forms event bodies are mostly made of (fixstr,
//  positive fixint) read inline.
static inline bool
s_read (zcq_mp_t *reader, zcq_mp_item_t *item)
{
    const uint8_t *at = reader->cursor;
    if (at < reader->end) {
        uint8_t tag = at[0];
        if ((tag & 0xe0) == 0xa0) {
            uint32_t len = tag & 0x1f;
            if ((size_t) (reader->end - at) <= len)
                return false;
            item->type = ZCQ_TYPE_STR;
            item->bytes = at + 1;
            item->len = len;
            reader->cursor = at + 1 + len;
            return true;
        }
        if (tag <= 0x7f) {
            item->type = ZCQ_TYPE_INT;
            item->big = false;
            item->as.i = tag;
            reader->cursor = at + 1;
            return true;
        }
    }
    return zcq_mp_read (reader, item);
}

bool
zcq_mp_skip (zcq_mp_t *reader, int open)
{
    uint64_t pending[ZCQ_MP_DEPTH_MAX]; //  values left in each open container
    int depth = 0;
    uint64_t left = 1;
    while (true) {
        zcq_mp_item_t item;
        if (!s_read (reader, &item))
            return false;
        left--;
        if (item.type == ZCQ_TYPE_ARRAY || item.type == ZCQ_TYPE_MAP) {
            //  msgpack-c counts a container, empty or not, against its
            //  stack of ZCQ_MP_DEPTH_MAX
            if (open + depth >= ZCQ_MP_DEPTH_MAX)
                return false;
            uint64_t values = item.type == ZCQ_TYPE_MAP ? 2 * (uint64_t) item.len : item.len;
            //  every value takes a byte at least: a count beyond the bytes
            //  left is a lie, found before any of it is walked
            if (values > (uint64_t) (reader->end - reader->cursor))
                return false;
            if (values) {
                pending[depth++] = left;
                left = values;
            }
        }
        while (!left) {
            if (!depth)
                return true;
            left = pending[--depth];
        }
    }
}

bool
zcq_mp_find (zcq_mp_t *reader, const char *key, size_t key_len)
{
    zcq_mp_item_t item;
    if (!s_read (reader, &item) || item.type != ZCQ_TYPE_MAP)
        return false;
    for (uint32_t entry = 0; entry < item.len; entry++) {
        const uint8_t *name_at = reader->cursor;
        zcq_mp_item_t name;
        if (!s_read (reader, &name))
            return false;
        if (name.type == ZCQ_TYPE_STR && name.len == key_len
            && (key_len == 0 || memcmp (name.bytes, key, key_len) == 0))
            return true;
        //  a container key was read as its header only
        if (name.type == ZCQ_TYPE_ARRAY || name.type == ZCQ_TYPE_MAP) {
            reader->cursor = name_at;
            if (!zcq_mp_skip (reader, 1))
                return false;
        }
        if (!zcq_mp_skip (reader, 1))
            return false;
    }
    return false;
}

bool
zcq_mp_int (const zcq_mp_item_t *item, int64_t *value)
{
    if (item->type != ZCQ_TYPE_INT || item->big)
        return false;
    *value = item->as.i;
    return true;
}

//  --------------------------------------------------------------------------
//  The layout (DESIGN 1)

typedef enum {
    S_POSITION,
    S_TIME,
    S_NODE,
    S_STREAM,
    S_AGGREGATE,
    S_KEY,
    S_VERSION,
    S_TYPE,
    S_COMMAND,
    S_META,
    S_DATA,
    S_OTHER,
    S_TYPE_VERSION //  event_version: optional, not in the fixed layout
} s_field_t;

static const struct {
    const char *name;
    size_t len;
} s_layout[ZCQ_EVENT_FIELDS] = {
    [S_POSITION] = { "position", 8 },   [S_TIME] = { "time", 4 },
    [S_NODE] = { "node", 4 },           [S_STREAM] = { "stream", 6 },
    [S_AGGREGATE] = { "aggregate", 9 }, [S_KEY] = { "key", 3 },
    [S_VERSION] = { "version", 7 },     [S_TYPE] = { "type", 4 },
    [S_COMMAND] = { "command", 7 },     [S_META] = { "meta", 4 },
    [S_DATA] = { "data", 4 },
};

const char *
zcq_event_field (size_t index)
{
    return index < ZCQ_EVENT_FIELDS ? s_layout[index].name : NULL;
}

void
zcq_event_encode_heartbeat (zcq_writer_t *body, const char *node, int group, uint64_t head,
                            uint64_t hw)
{
    zcq_writer_reset (body);
    zcq_writer_map (body, group >= 0 ? 5 : 3);
    zcq_writer_str (body, "node");
    zcq_writer_str (body, node);
    zcq_writer_str (body, "head");
    zcq_writer_uint (body, head);
    zcq_writer_str (body, "time");
    zcq_writer_int (body, zcq_now_us ());
    if (group >= 0) {
        zcq_writer_str (body, "group");
        zcq_writer_uint (body, (uint64_t) group);
        zcq_writer_str (body, "hw");
        zcq_writer_uint (body, hw);
    }
}

void
zcq_event_encode_head (zcq_writer_t *body, const char *node, int group, const char *stream,
                       size_t stream_len, size_t aggregate_len, uint64_t version, const char *type,
                       uint32_t type_version, const char *command, size_t command_len,
                       const zcq_value_t *meta)
{
    //  the map's header, then position and time at fixed width
    static const uint8_t stamps[ZCQ_EVENT_HEADER_SIZE] = { 0x80 | ZCQ_EVENT_FIELDS,
                                                           0xa8,
                                                           'p',
                                                           'o',
                                                           's',
                                                           'i',
                                                           't',
                                                           'i',
                                                           'o',
                                                           'n',
                                                           0xcf,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0xa4,
                                                           't',
                                                           'i',
                                                           'm',
                                                           'e',
                                                           0xd3,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0,
                                                           0 };
    //  a clustered node's event has one entry more: its group; an event of
    //  a type past its first version one more: event_version
    uint8_t fields = (uint8_t) (0x80 | (ZCQ_EVENT_FIELDS + (group >= 0) + (type_version > 1)));
    zcq_writer_raw (body, &fields, 1);
    zcq_writer_raw (body, stamps + 1, sizeof stamps - 1);
    zcq_writer_str (body, "node");
    zcq_writer_str (body, node);
    zcq_writer_str (body, "stream");
    zcq_writer_strn (body, stream, stream_len);
    zcq_writer_str (body, "aggregate");
    zcq_writer_strn (body, stream, aggregate_len);
    zcq_writer_str (body, "key");
    zcq_writer_strn (body, stream + aggregate_len + 1, stream_len - aggregate_len - 1);
    zcq_writer_str (body, "version");
    zcq_writer_uint (body, version);
    zcq_writer_str (body, "type");
    zcq_writer_str (body, type);
    zcq_writer_str (body, "command");
    zcq_writer_strn (body, command, command_len);
    zcq_writer_str (body, "meta");
    if (meta)
        zcq_writer_value (body, meta);
    else
        zcq_writer_map (body, 0);
    if (group >= 0) {
        zcq_writer_str (body, "group");
        zcq_writer_uint (body, (uint64_t) group);
    }
    if (type_version > 1) {
        zcq_writer_str (body, "event_version");
        zcq_writer_uint (body, type_version);
    }
    zcq_writer_str (body, "data");
}

//  The header fields every event has (meta and data may be absent).
#define S_REQUIRED                                                                       \
    (1u << S_POSITION | 1u << S_TIME | 1u << S_NODE | 1u << S_STREAM | 1u << S_AGGREGATE \
     | 1u << S_KEY | 1u << S_VERSION | 1u << S_TYPE | 1u << S_COMMAND)

//  The field a name stands for: s_layout's names by their lengths, each
//  compared at a constant size (a few integer compares, no call).
#define S_IS(text) (memcmp (name, text, sizeof (text) - 1) == 0)
static s_field_t
s_field_of (const void *name, size_t len)
{
    switch (len) {
        case 3: return S_IS ("key") ? S_KEY : S_OTHER;
        case 4:
            return S_IS ("time") ? S_TIME
                 : S_IS ("node") ? S_NODE
                 : S_IS ("type") ? S_TYPE
                 : S_IS ("meta") ? S_META
                 : S_IS ("data") ? S_DATA
                                 : S_OTHER;
        case 6: return S_IS ("stream") ? S_STREAM : S_OTHER;
        case 7: return S_IS ("version") ? S_VERSION : S_IS ("command") ? S_COMMAND : S_OTHER;
        case 8: return S_IS ("position") ? S_POSITION : S_OTHER;
        case 9: return S_IS ("aggregate") ? S_AGGREGATE : S_OTHER;
        case 13: return S_IS ("event_version") ? S_TYPE_VERSION : S_OTHER;
        default: return S_OTHER;
    }
}
#undef S_IS

//  Where a string header field is copied to, and its room.
static char *
s_buffer_of (zcq_event_t *self, s_field_t field, size_t *size)
{
    switch (field) {
        case S_NODE: *size = sizeof self->node; return self->node;
        case S_STREAM: *size = sizeof self->stream; return self->stream;
        case S_AGGREGATE: *size = sizeof self->aggregate; return self->aggregate;
        case S_KEY: *size = sizeof self->key; return self->key;
        case S_TYPE: *size = sizeof self->type; return self->type;
        case S_COMMAND: *size = sizeof self->command; return self->command;
        default: *size = 0; return NULL;
    }
}

//  Copy a string field out when it fits and holds no NUL.
static bool
s_copy_str (char *buffer, size_t size, const void *str, size_t len)
{
    if (len >= size || memchr (str, 0, len))
        return false;
    memcpy (buffer, str, len);
    buffer[len] = 0;
    return true;
}

bool
zcq_event_position_of (const void *bytes, size_t size, uint64_t *position)
{
    static const uint8_t start[ZCQ_EVENT_POSITION_OFFSET - 1]
        = { 0xa8, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 0xcf };
    const uint8_t *head = bytes;
    //  a single node's event, or a clustered one's (with its group), either
    //  perhaps with an event_version
    if (size < ZCQ_EVENT_HEADER_SIZE || head[0] < (0x80 | ZCQ_EVENT_FIELDS)
        || head[0] > (0x80 | (ZCQ_EVENT_FIELDS + 2)) || memcmp (head + 1, start, sizeof start) != 0)
        return false;
    *position = zcq_get_be64 ((const uint8_t *) bytes + ZCQ_EVENT_POSITION_OFFSET);
    return true;
}

//  --------------------------------------------------------------------------
//  Reading an event

//  Forget the previous event (keep the buffers).
static void
s_reset (zcq_event_t *self)
{
    self->bytes = NULL;
    self->size = 0;
    self->data_at = self->meta_at = NULL;
    self->data_len = self->meta_len = 0;
    self->body = self->data = self->meta = NULL;
    self->decoded = false;
    self->failed = false;
    self->error[0] = 0;
    self->type_version = 1;
    if (self->arena)
        zcq_arena_reset (self->arena);
}

zcq_err_t
zcq_event_read (zcq_event_t *self, const void *bytes, size_t size)
{
    s_reset (self);
    self->bytes = bytes;
    self->size = size;
    zcq_mp_t reader = { bytes, (const uint8_t *) bytes + size };
    zcq_mp_item_t map;
    if (!bytes || !s_read (&reader, &map) || map.type != ZCQ_TYPE_MAP)
        return ZCQ_CORRUPT;
    unsigned seen = 0;
    for (uint32_t entry = 0; entry < map.len; entry++) {
        const uint8_t *name_at = reader.cursor;
        zcq_mp_item_t name, value;
        if (!s_read (&reader, &name))
            return ZCQ_CORRUPT;
        if (name.type != ZCQ_TYPE_STR) {
            //  not a name: the entry is skipped whole
            reader.cursor = name_at;
            if (!zcq_mp_skip (&reader, 1) || !zcq_mp_skip (&reader, 1))
                return ZCQ_CORRUPT;
            continue;
        }
        s_field_t field = s_field_of (name.bytes, name.len);
        const uint8_t *value_at = reader.cursor;
        switch (field) {
            case S_POSITION:
            case S_VERSION:
                if (!s_read (&reader, &value) || value.type != ZCQ_TYPE_INT
                    || (!value.big && value.as.i < 0))
                    return ZCQ_CORRUPT;
                *(field == S_POSITION ? &self->position : &self->version)
                    = value.big ? value.as.u : (uint64_t) value.as.i;
                break;
            case S_TIME:
                if (!s_read (&reader, &value) || !zcq_mp_int (&value, &self->time))
                    return ZCQ_CORRUPT;
                break;
            case S_DATA:
            case S_META:
                if (!zcq_mp_skip (&reader, 1))
                    return ZCQ_CORRUPT;
                if (field == S_DATA) {
                    self->data_at = value_at;
                    self->data_len = (size_t) (reader.cursor - value_at);
                }
                else {
                    self->meta_at = value_at;
                    self->meta_len = (size_t) (reader.cursor - value_at);
                }
                break;
            case S_OTHER:
                if (!zcq_mp_skip (&reader, 1))
                    return ZCQ_CORRUPT;
                break;
            case S_TYPE_VERSION: {
                int64_t number;
                if (!s_read (&reader, &value) || !zcq_mp_int (&value, &number) || number < 1
                    || number > UINT32_MAX)
                    return ZCQ_CORRUPT;
                self->type_version = (uint32_t) number;
                break;
            }
            default: {
                size_t room;
                char *buffer = s_buffer_of (self, field, &room);
                if (!s_read (&reader, &value) || value.type != ZCQ_TYPE_STR
                    || !s_copy_str (buffer, room, value.bytes, value.len))
                    return ZCQ_CORRUPT;
            }
        }
        seen |= 1u << field;
    }
    if (reader.cursor != reader.end)
        return ZCQ_CORRUPT; //  bytes after the map
    return (seen & S_REQUIRED) == S_REQUIRED ? ZCQ_OK : ZCQ_CORRUPT;
}

zcq_err_t
zcq_event_parse (zcq_event_t *self, const zcq_value_t *body)
{
    s_reset (self);
    self->body = body;
    self->decoded = true;
    if (zcq_value_type (body) != ZCQ_TYPE_MAP)
        return ZCQ_CORRUPT;
    unsigned seen = 0;
    size_t count = zcq_value_size (body);
    for (size_t entry = 0; entry < count; entry++) {
        const char *name;
        size_t len;
        if (!zcq_value_str (zcq_value_key_at (body, entry), &name, &len))
            continue;
        s_field_t field = s_field_of (name, len);
        const zcq_value_t *value = zcq_value_val_at (body, entry);
        switch (field) {
            case S_POSITION:
                if (!zcq_value_uint (value, &self->position))
                    return ZCQ_CORRUPT;
                break;
            case S_VERSION:
                if (!zcq_value_uint (value, &self->version))
                    return ZCQ_CORRUPT;
                break;
            case S_TIME:
                if (!zcq_value_int (value, &self->time))
                    return ZCQ_CORRUPT;
                break;
            case S_DATA: self->data = value; break;
            case S_META: self->meta = value; break;
            case S_OTHER: break;
            case S_TYPE_VERSION: {
                int64_t number;
                if (!zcq_value_int (value, &number) || number < 1 || number > UINT32_MAX)
                    return ZCQ_CORRUPT;
                self->type_version = (uint32_t) number;
                break;
            }
            default: {
                size_t room;
                char *buffer = s_buffer_of (self, field, &room);
                const char *str;
                size_t str_len;
                if (!zcq_value_str (value, &str, &str_len)
                    || !s_copy_str (buffer, room, str, str_len))
                    return ZCQ_CORRUPT;
            }
        }
        seen |= 1u << field;
    }
    return (seen & S_REQUIRED) == S_REQUIRED ? ZCQ_OK : ZCQ_CORRUPT;
}

void
zcq_event_release (zcq_event_t *self)
{
    zcq_arena_destroy (&self->arena);
    zcq_doc_destroy (&self->doc);
    zcq_writer_destroy (&self->upcast_bodies[0]);
    zcq_writer_destroy (&self->upcast_bodies[1]);
    zcq_fields_destroy (&self->upcast_data);
}

//  Decode the body read in place, once, for the value accessors (DESIGN 3).
//  The event is read-only to handlers; the document is a cache of it.
static const zcq_event_t *
s_decoded (const zcq_event_t *self)
{
    if (self->decoded)
        return self;
    zcq_event_t *mutable_self = (zcq_event_t *) self;
    mutable_self->decoded = true;
    if (!mutable_self->doc && !(mutable_self->doc = zcq_doc_new ()))
        return self;
    if (zcq_doc_decode_trusted (mutable_self->doc, self->bytes, self->size) != ZCQ_OK)
        return self;
    const zcq_value_t *body = zcq_doc_root (mutable_self->doc);
    mutable_self->body = body;
    //  the last data and meta, as the reading pass took them
    for (size_t entry = 0; entry < zcq_value_size (body); entry++) {
        const zcq_value_t *name = zcq_value_key_at (body, entry);
        if (zcq_value_streq (name, "data"))
            mutable_self->data = zcq_value_val_at (body, entry);
        else if (zcq_value_streq (name, "meta"))
            mutable_self->meta = zcq_value_val_at (body, entry);
    }
    return self;
}

const zcq_value_t *
zcq_event_body (const zcq_event_t *self)
{
    return s_decoded (self)->body;
}

const zcq_value_t *
zcq_event_data (const zcq_event_t *self)
{
    if (!self->decoded && !self->data_at)
        return NULL;
    return s_decoded (self)->data;
}

const zcq_value_t *
zcq_event_meta (const zcq_event_t *self)
{
    if (!self->decoded && !self->meta_at)
        return NULL;
    return s_decoded (self)->meta;
}

const char *
zcq_event_type (const zcq_event_t *self)
{
    return self->type;
}

const char *
zcq_event_stream (const zcq_event_t *self)
{
    return self->stream;
}

const char *
zcq_event_aggregate (const zcq_event_t *self)
{
    return self->aggregate;
}

const char *
zcq_event_key (const zcq_event_t *self)
{
    return self->key;
}

const char *
zcq_event_command_id (const zcq_event_t *self)
{
    return self->command;
}

const char *
zcq_event_node (const zcq_event_t *self)
{
    return self->node;
}

uint64_t
zcq_event_position (const zcq_event_t *self)
{
    return self->position;
}

uint64_t
zcq_event_version (const zcq_event_t *self)
{
    return self->version;
}

int64_t
zcq_event_time (const zcq_event_t *self)
{
    return self->time;
}

void *
zcq_event_context (const zcq_event_t *self)
{
    return self->context;
}

uint32_t
zcq_event_type_version (const zcq_event_t *self)
{
    return self->type_version;
}

//  Find a payload field where it lies: its value read, or false when data
//  is absent, not a map or has no such field (the first one counts, as
//  zcq_value_get finds it).
static bool
s_data_field (const zcq_event_t *self, const char *field, zcq_mp_item_t *value)
{
    if (!self->data_at)
        return false;
    zcq_mp_t reader = { self->data_at, self->data_at + self->data_len };
    return zcq_mp_find (&reader, field, strlen (field)) && s_read (&reader, value);
}

int64_t
zcq_event_int (const zcq_event_t *self, const char *field, int64_t fallback)
{
    if (self->bytes) {
        zcq_mp_item_t value;
        int64_t number;
        return s_data_field (self, field, &value) && zcq_mp_int (&value, &number) ? number
                                                                                  : fallback;
    }
    return zcq_value_get_int (self->data, field, fallback);
}

const char *
zcq_event_str (const zcq_event_t *self, const char *field)
{
    const char *str;
    size_t len;
    if (self->bytes) {
        zcq_mp_item_t value;
        if (!s_data_field (self, field, &value) || value.type != ZCQ_TYPE_STR)
            return "";
        str = (const char *) value.bytes;
        len = value.len;
    }
    else if (!zcq_value_str (zcq_value_get (self->data, field), &str, &len))
        return "";
    //  the arena is a cache of the event, not part of its value
    zcq_event_t *mutable_self = (zcq_event_t *) self;
    if (!mutable_self->arena && !(mutable_self->arena = zcq_arena_new ()))
        return "";
    const char *copy = zcq_arena_strndup (mutable_self->arena, str, len);
    return copy ? copy : "";
}

//  --------------------------------------------------------------------------
//  Strict reads: a handler fails, the first reason stays

void
zcq_event_fail (const zcq_event_t *self, const char *format, ...)
{
    //  the failure is the handler's run on the event, not the event's value
    zcq_event_t *mutable_self = (zcq_event_t *) self;
    if (self->failed)
        return;
    mutable_self->failed = true;
    int used = snprintf (mutable_self->error, sizeof self->error,
                         "event %s of %s (version %llu): ", self->type, self->stream,
                         (unsigned long long) self->version);
    if (used < 0 || (size_t) used >= sizeof self->error)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (mutable_self->error + used, sizeof self->error - (size_t) used, format, args);
    va_end (args);
}

int64_t
zcq_event_int_req (const zcq_event_t *self, const char *field)
{
    if (self->bytes) {
        zcq_mp_item_t value;
        int64_t number;
        if (!s_data_field (self, field, &value))
            zcq_event_fail (self, "data.%s is missing", field);
        else if (!zcq_mp_int (&value, &number))
            zcq_event_fail (self, "data.%s is not an integer", field);
        else
            return number;
        return 0;
    }
    const zcq_value_t *found = zcq_value_get (self->data, field);
    int64_t number;
    if (!found)
        zcq_event_fail (self, "data.%s is missing", field);
    else if (!zcq_value_int (found, &number))
        zcq_event_fail (self, "data.%s is not an integer", field);
    else
        return number;
    return 0;
}

const char *
zcq_event_str_req (const zcq_event_t *self, const char *field)
{
    bool present, string;
    if (self->bytes) {
        zcq_mp_item_t value;
        present = s_data_field (self, field, &value);
        string = present && value.type == ZCQ_TYPE_STR && !memchr (value.bytes, 0, value.len);
    }
    else {
        const char *str;
        size_t len;
        const zcq_value_t *found = zcq_value_get (self->data, field);
        present = found != NULL;
        string = present && zcq_value_str (found, &str, &len) && !memchr (str, 0, len);
    }
    if (!present)
        zcq_event_fail (self, "data.%s is missing", field);
    else if (!string)
        zcq_event_fail (self, "data.%s is not a string", field);
    else
        return zcq_event_str (self, field);
    return "";
}

//  --------------------------------------------------------------------------
//  Upcasting (DESIGN 6)

//  Write the body of the event, but for event_version and data, into body:
//  every other entry as it is. Returns the entries written.
static size_t
s_copy_header (const zcq_event_t *self, zcq_writer_t *body)
{
    size_t count = 0;
    if (self->bytes) {
        zcq_mp_t reader = { self->bytes, self->bytes + self->size };
        zcq_mp_item_t map;
        if (!s_read (&reader, &map) || map.type != ZCQ_TYPE_MAP)
            return 0; //  not after a successful zcq_event_read
        for (uint32_t entry = 0; entry < map.len; entry++) {
            const uint8_t *name_at = reader.cursor;
            zcq_mp_item_t name;
            s_read (&reader, &name);
            if (name.type == ZCQ_TYPE_ARRAY || name.type == ZCQ_TYPE_MAP) {
                reader.cursor = name_at;
                zcq_mp_skip (&reader, 1);
            }
            const uint8_t *value_at = reader.cursor;
            zcq_mp_skip (&reader, 1);
            s_field_t field = name.type == ZCQ_TYPE_STR ? s_field_of (name.bytes, name.len)
                                                        : S_OTHER;
            if (field == S_DATA || field == S_TYPE_VERSION)
                continue;
            zcq_writer_raw (body, name_at, (size_t) (value_at - name_at));
            zcq_writer_raw (body, value_at, (size_t) (reader.cursor - value_at));
            count++;
        }
        return count;
    }
    for (size_t entry = 0; entry < zcq_value_size (self->body); entry++) {
        const zcq_value_t *name = zcq_value_key_at (self->body, entry);
        const char *text;
        size_t len;
        if (zcq_value_str (name, &text, &len)) {
            s_field_t field = s_field_of (text, len);
            if (field == S_DATA || field == S_TYPE_VERSION)
                continue;
        }
        zcq_writer_value (body, name);
        zcq_writer_value (body, zcq_value_val_at (self->body, entry));
        count++;
    }
    return count;
}

zcq_err_t
zcq_event_upcast (zcq_event_t *self, const zcq_event_def_t *def)
{
    uint32_t target = def->version ? def->version : 1;
    if (self->type_version == target)
        return ZCQ_OK;
    if (self->type_version > target) {
        zcq_event_fail (self, "event_version %u is newer than this domain's %u", self->type_version,
                        target);
        return ZCQ_INTERNAL;
    }
    if (!self->upcast_data && !(self->upcast_data = zcq_fields_new ()))
        return ZCQ_NOMEM;
    for (int index = 0; index < 2; index++)
        if (!self->upcast_bodies[index] && !(self->upcast_bodies[index] = zcq_writer_new ()))
            return ZCQ_NOMEM;
    while (self->type_version < target) {
        uint32_t from = self->type_version;
        if (!def->upcast) {
            zcq_event_fail (self, "no upcaster from event_version %u to %u", from, target);
            return ZCQ_INTERNAL;
        }
        zcq_fields_reset (self->upcast_data);
        zcq_err_t err = def->upcast (self, from, self->upcast_data);
        if (self->failed)
            return ZCQ_INTERNAL;
        if (err != ZCQ_OK) {
            zcq_event_fail (self, "upcasting from event_version %u: %s", from, zcq_strerror (err));
            return ZCQ_INTERNAL;
        }
        //  the next body goes into the writer the current one is not in
        zcq_writer_t *body = self->upcast_bodies[self->upcast_turn];
        self->upcast_turn ^= 1;
        zcq_writer_reset (body);
        size_t mark = zcq_writer_map_open (body);
        size_t count = s_copy_header (self, body);
        zcq_writer_str (body, "event_version");
        zcq_writer_uint (body, from + 1);
        zcq_writer_str (body, "data");
        zcq_fields_encode (self->upcast_data, body);
        zcq_writer_map_close (body, mark, count + 2);
        if (!zcq_writer_ok (body) || !zcq_fields_ok (self->upcast_data))
            return ZCQ_NOMEM;
        void *context = self->context;
        err = zcq_event_read (self, zcq_writer_data (body), zcq_writer_size (body));
        self->context = context;
        if (err != ZCQ_OK || self->type_version != from + 1)
            return ZCQ_CORRUPT;
    }
    return ZCQ_OK;
}
