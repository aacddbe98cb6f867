/*  view.c: zcq_viewtable_t, the in-memory table behind every view.

    DESIGN
    1.  Rows live in a skip list ordered by key (p = 1/4, so 1.33 forward
        pointers per row on average) and in an open-addressing hash table
        of node pointers for O(1) look-ups. A node carries its key inline
        and points to the row's encoded bytes.
    2.  Each index is a skip list of composite keys
        [u32 value length][encoded value][row key], so the rows with one
        value are contiguous and in key order, plus a count per value.
    3.  An index entry exists only for rows that have the field. Values are
        compared as encoded bytes (msgpack-c writes the shortest form, so
        equal values encode equally).
*/
#include "zcq_internal.h"
#include <string.h>

#define S_MAX_LEVEL   24
#define S_COUNT_SLOTS 64 //  initial and smallest value-count table

typedef struct s_node_t {
    void *payload; //  primary: the row bytes; index: primary node
    uint32_t key_len;
    uint32_t row_len;
    uint8_t level;
    uint32_t mark;              //  scratch: a row's number while a snapshot is taken
    struct s_node_t *forward[]; //  `level` pointers, then the key bytes
} s_node_t;

typedef struct {
    s_node_t *head;
    int level;
    size_t count;
    uint64_t random;
    bool tail_valid;             //  tail[] is the last node at each level
    s_node_t *tail[S_MAX_LEVEL]; //  (appends keep it; other changes drop it)
} s_skiplist_t;

typedef struct {
    char *value;
    uint32_t len;
    uint64_t hash;
    size_t count;
} s_count_t;

typedef struct {
    char *field;
    s_skiplist_t list;
    s_count_t *counts; //  open addressing by value
    size_t count_slots;
    size_t count_used;
} s_index_t;

struct zcq_viewtable_t {
    s_skiplist_t rows;
    uint64_t *slots; //  hash table of row nodes (tagged pointers)
    size_t slot_count;
    size_t memory;
    s_index_t *indexes;
    size_t index_count;
    zcq_doc_t *doc;
    zcq_writer_t *old_value;
    zcq_writer_t *new_value;
    char *composite;
    size_t composite_size;
    s_node_t **loaded; //  rows appended by zcq_viewtable_load_row, in order
    size_t loaded_count;
    size_t loaded_capacity;
    bool *index_loaded; //  per index: its entries came from the snapshot
};

static inline const char *
s_key (const s_node_t *node)
{
    return (const char *) &node->forward[node->level];
}

static inline int
s_compare (const char *a, size_t a_len, const char *b, size_t b_len)
{
    int order = memcmp (a, b, a_len < b_len ? a_len : b_len);
    if (order)
        return order;
    return a_len < b_len ? -1 : (a_len > b_len ? 1 : 0);
}

//  --------------------------------------------------------------------------
//  Skip lists (DESIGN 1)

static bool
s_skiplist_init (s_skiplist_t *list, uint64_t seed)
{
    list->head = calloc (1, sizeof (s_node_t) + S_MAX_LEVEL * sizeof (s_node_t *));
    if (!list->head)
        return false;
    list->head->level = S_MAX_LEVEL;
    list->level = 1;
    list->count = 0;
    list->random = seed | 1;
    return true;
}

static int
s_random_level (s_skiplist_t *list)
{
    uint64_t x = list->random;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    list->random = x;
    int level = 1;
    while (level < S_MAX_LEVEL && (x & 3) == 0) {
        level++;
        x >>= 2;
    }
    return level;
}

//  Fill update[] with the last node before key at each level; return the
//  first node with a key >= key.
static s_node_t *
s_skiplist_seek (const s_skiplist_t *list, const char *key, size_t key_len, s_node_t **update)
{
    s_node_t *node = list->head;
    for (int level = list->level - 1; level >= 0; level--) {
        while (
            node->forward[level]
            && s_compare (s_key (node->forward[level]), node->forward[level]->key_len, key, key_len)
                   < 0)
            node = node->forward[level];
        if (update)
            update[level] = node;
    }
    return node->forward[0];
}

//  First node with a key > key (or the first node when key is NULL).
static s_node_t *
s_skiplist_after (const s_skiplist_t *list, const char *key, size_t key_len)
{
    if (!key)
        return list->head->forward[0];
    s_node_t *node = s_skiplist_seek (list, key, key_len, NULL);
    if (node && node->key_len == key_len && memcmp (s_key (node), key, key_len) == 0)
        node = node->forward[0];
    return node;
}

//  A node for key at a random level; NULL when out of memory.
static s_node_t *
s_node_new (s_skiplist_t *list, const char *key, size_t key_len, size_t *memory)
{
    int level = s_random_level (list);
    size_t size = sizeof (s_node_t) + (size_t) level * sizeof (s_node_t *) + key_len;
    s_node_t *node = malloc (size);
    if (!node)
        return NULL;
    node->payload = NULL;
    node->key_len = (uint32_t) key_len;
    node->row_len = 0;
    node->level = (uint8_t) level;
    memcpy ((char *) &node->forward[level], key, key_len);
    *memory += size;
    return node;
}

//  Link node after update[] at each of its levels.
static void
s_skiplist_link (s_skiplist_t *list, s_node_t *node, s_node_t **update)
{
    if (node->level > list->level) {
        for (int index = list->level; index < node->level; index++)
            update[index] = list->head;
        list->level = node->level;
    }
    for (int index = 0; index < node->level; index++) {
        node->forward[index] = update[index]->forward[index];
        update[index]->forward[index] = node;
    }
    list->count++;
}

//  Insert a node for key (which must be absent); NULL when out of memory.
static s_node_t *
s_skiplist_insert (s_skiplist_t *list, const char *key, size_t key_len, size_t *memory)
{
    s_node_t *update[S_MAX_LEVEL];
    s_skiplist_seek (list, key, key_len, update);
    list->tail_valid = false;
    s_node_t *node = s_node_new (list, key, key_len, memory);
    if (node)
        s_skiplist_link (list, node, update);
    return node;
}

//  Add a node for a key that sorts after every key in the list, in O(1)
//  while only appends follow each other. NULL when out of memory or when
//  the key is not the greatest (*in_order is then false).
static s_node_t *
s_skiplist_append (s_skiplist_t *list, const char *key, size_t key_len, size_t *memory,
                   bool *in_order)
{
    if (!list->tail_valid) {
        s_node_t *node = list->head;
        for (int level = S_MAX_LEVEL - 1; level >= 0; level--) {
            while (node->forward[level])
                node = node->forward[level];
            list->tail[level] = node;
        }
        list->tail_valid = true;
    }
    s_node_t *last = list->tail[0];
    *in_order = last == list->head || s_compare (s_key (last), last->key_len, key, key_len) < 0;
    if (!*in_order)
        return NULL;
    s_node_t *node = s_node_new (list, key, key_len, memory);
    if (!node)
        return NULL;
    s_skiplist_link (list, node, list->tail);
    for (int index = 0; index < node->level; index++)
        list->tail[index] = node;
    return node;
}

//  Unlink the node for key and return it (the caller frees it).
static s_node_t *
s_skiplist_remove (s_skiplist_t *list, const char *key, size_t key_len, size_t *memory)
{
    s_node_t *update[S_MAX_LEVEL];
    s_node_t *node = s_skiplist_seek (list, key, key_len, update);
    if (!node || node->key_len != key_len || memcmp (s_key (node), key, key_len) != 0)
        return NULL;
    list->tail_valid = false;
    for (int index = 0; index < node->level; index++)
        if (update[index]->forward[index] == node)
            update[index]->forward[index] = node->forward[index];
    while (list->level > 1 && !list->head->forward[list->level - 1])
        list->level--;
    list->count--;
    *memory -= sizeof (s_node_t) + (size_t) node->level * sizeof (s_node_t *) + node->key_len;
    return node;
}

static void
s_skiplist_free (s_skiplist_t *list, bool free_payloads)
{
    if (!list->head)
        return;
    s_node_t *node = list->head->forward[0];
    while (node) {
        s_node_t *next = node->forward[0];
        if (free_payloads)
            free (node->payload);
        free (node);
        node = next;
    }
    free (list->head);
    list->head = NULL;
}

//  --------------------------------------------------------------------------
//  Hash table of row nodes: linear probing, backward-shift deletion. A slot
//  holds the node pointer with 16 bits of the key's hash in its unused top
//  bits, so a probe that does not match costs no trip to the node. (User
//  space pointers stay below 2^48 on Linux x86-64 and arm64 unless a
//  program maps memory above that on purpose.)

#define S_TAG_SHIFT 48
#define S_PTR_MASK  ((1ULL << S_TAG_SHIFT) - 1)

static inline s_node_t *
s_slot_node (uint64_t slot)
{
    return (s_node_t *) (uintptr_t) (slot & S_PTR_MASK);
}

static inline uint64_t
s_slot_make (s_node_t *node, uint64_t hash)
{
    return (uint64_t) (uintptr_t) node | (hash & ~S_PTR_MASK);
}

//  The slot of key: where it is, or the empty slot where it would go.
static size_t
s_slot_of (const zcq_viewtable_t *self, const char *key, size_t key_len, uint64_t hash)
{
    size_t mask = self->slot_count - 1;
    size_t slot = (size_t) hash & mask;
    uint64_t tag = hash & ~S_PTR_MASK;
    while (self->slots[slot]) {
        if ((self->slots[slot] & ~S_PTR_MASK) == tag) {
            s_node_t *node = s_slot_node (self->slots[slot]);
            if (node->key_len == key_len && memcmp (s_key (node), key, key_len) == 0)
                return slot;
        }
        slot = (slot + 1) & mask;
    }
    return slot;
}

static bool
s_slots_grow (zcq_viewtable_t *self)
{
    size_t count = self->slot_count * 2;
    uint64_t *slots = calloc (count, sizeof (uint64_t));
    if (!slots)
        return false;
    uint64_t *old = self->slots;
    size_t old_count = self->slot_count;
    self->slots = slots;
    self->slot_count = count;
    for (size_t index = 0; index < old_count; index++)
        if (old[index]) {
            s_node_t *node = s_slot_node (old[index]);
            uint64_t hash = zcq_hash (s_key (node), node->key_len);
            self->slots[s_slot_of (self, s_key (node), node->key_len, hash)]
                = s_slot_make (node, hash);
        }
    free (old);
    self->memory += (count - old_count) * sizeof (uint64_t);
    return true;
}

static void
s_slots_remove (zcq_viewtable_t *self, size_t slot)
{
    size_t mask = self->slot_count - 1;
    self->slots[slot] = 0;
    size_t next = (slot + 1) & mask;
    while (self->slots[next]) {
        s_node_t *node = s_slot_node (self->slots[next]);
        size_t home = (size_t) zcq_hash (s_key (node), node->key_len) & mask;
        //  move the entry back if its home is not in (slot, next]
        bool between = slot <= next ? (home > slot && home <= next) : (home > slot || home <= next);
        if (!between) {
            self->slots[slot] = self->slots[next];
            self->slots[next] = 0;
            slot = next;
        }
        next = (next + 1) & mask;
    }
}

//  --------------------------------------------------------------------------
//  Value counts per index

static s_count_t *
s_count_slot (s_index_t *index, const char *value, size_t len, uint64_t hash)
{
    size_t mask = index->count_slots - 1;
    size_t slot = (size_t) hash & mask;
    while (index->counts[slot].value) {
        s_count_t *entry = &index->counts[slot];
        if (entry->hash == hash && entry->len == len && memcmp (entry->value, value, len) == 0)
            return entry;
        slot = (slot + 1) & mask;
    }
    return &index->counts[slot];
}

//  Remove the entry at slot, shifting later entries of its run back.
static void
s_count_remove (s_index_t *index, size_t slot)
{
    size_t mask = index->count_slots - 1;
    free (index->counts[slot].value);
    index->counts[slot] = (s_count_t) { 0 };
    index->count_used--;
    size_t next = (slot + 1) & mask;
    while (index->counts[next].value) {
        size_t home = (size_t) index->counts[next].hash & mask;
        bool between = slot <= next ? (home > slot && home <= next) : (home > slot || home <= next);
        if (!between) {
            index->counts[slot] = index->counts[next];
            index->counts[next] = (s_count_t) { 0 };
            slot = next;
        }
        next = (next + 1) & mask;
    }
}

//  Rehash the value counts into a table of `slots` entries.
static bool
s_count_resize (zcq_viewtable_t *self, s_index_t *index, size_t slots)
{
    s_count_t *counts = calloc (slots, sizeof (s_count_t));
    if (!counts)
        return false;
    s_count_t *old = index->counts;
    size_t old_slots = index->count_slots;
    index->counts = counts;
    index->count_slots = slots;
    for (size_t slot = 0; slot < old_slots; slot++)
        if (old[slot].value)
            *s_count_slot (index, old[slot].value, old[slot].len, old[slot].hash) = old[slot];
    free (old);
    self->memory = self->memory - old_slots * sizeof (s_count_t) + slots * sizeof (s_count_t);
    return true;
}

//  Change the count of a value; an entry goes when its count reaches 0,
//  and the table shrinks when it is mostly empty.
static bool
s_count_add (zcq_viewtable_t *self, s_index_t *index, const char *value, size_t len, int delta)
{
    if (delta > 0 && (index->count_used + 1) * 4 > index->count_slots * 3
        && !s_count_resize (self, index, index->count_slots * 2))
        return false;
    uint64_t hash = zcq_hash (value, len);
    s_count_t *entry = s_count_slot (index, value, len, hash);
    if (!entry->value) {
        if (delta < 0)
            return true;
        entry->value = malloc (len ? len : 1);
        if (!entry->value)
            return false;
        memcpy (entry->value, value, len);
        entry->len = (uint32_t) len;
        entry->hash = hash;
        entry->count = 0;
        index->count_used++;
        self->memory += len;
    }
    if (delta < 0 && entry->count <= (size_t) -delta) {
        self->memory -= entry->len;
        s_count_remove (index, (size_t) (entry - index->counts));
        if (index->count_slots > S_COUNT_SLOTS && index->count_used * 8 < index->count_slots)
            s_count_resize (self, index, index->count_slots / 2);
        return true;
    }
    entry->count += delta;
    return true;
}

//  --------------------------------------------------------------------------

zcq_viewtable_t *
zcq_viewtable_new (const char *const *indexes)
{
    zcq_viewtable_t *self = calloc (1, sizeof (zcq_viewtable_t));
    if (!self)
        return NULL;
    bool ok = s_skiplist_init (&self->rows, (uint64_t) (uintptr_t) self);
    self->slot_count = 1024;
    self->slots = calloc (self->slot_count, sizeof (uint64_t));
    self->memory = self->slot_count * sizeof (uint64_t);
    self->doc = zcq_doc_new ();
    self->old_value = zcq_writer_new ();
    self->new_value = zcq_writer_new ();
    ok = ok && self->slots && self->doc && self->old_value && self->new_value;
    while (ok && indexes && indexes[self->index_count])
        self->index_count++;
    if (ok && self->index_count) {
        self->indexes = calloc (self->index_count, sizeof (s_index_t));
        ok = self->indexes != NULL;
        for (size_t index = 0; ok && index < self->index_count; index++) {
            s_index_t *entry = &self->indexes[index];
            entry->field = strdup (indexes[index]);
            entry->count_slots = S_COUNT_SLOTS;
            entry->counts = calloc (entry->count_slots, sizeof (s_count_t));
            self->memory += entry->count_slots * sizeof (s_count_t);
            ok = entry->field && entry->counts
              && s_skiplist_init (&entry->list, (uint64_t) (uintptr_t) entry);
        }
    }
    if (!ok)
        zcq_viewtable_destroy (&self);
    return self;
}

void
zcq_viewtable_destroy (zcq_viewtable_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_viewtable_t *self = *self_p;
    s_skiplist_free (&self->rows, true);
    for (size_t index = 0; index < self->index_count; index++) {
        s_index_t *entry = &self->indexes[index];
        s_skiplist_free (&entry->list, false);
        for (size_t slot = 0; entry->counts && slot < entry->count_slots; slot++)
            free (entry->counts[slot].value);
        free (entry->counts);
        free (entry->field);
    }
    free (self->indexes);
    free (self->slots);
    zcq_doc_destroy (&self->doc);
    zcq_writer_destroy (&self->old_value);
    zcq_writer_destroy (&self->new_value);
    free (self->composite);
    free (self->loaded);
    free (self->index_loaded);
    free (self);
    *self_p = NULL;
}

//  True when value (one whole encoded value) is a string or a non-negative
//  integer in the shortest form, which is how the writer encodes it: its
//  bytes can go into an index as they are, without a decode and encode.
static bool
s_shortest (const uint8_t *value, size_t len)
{
    uint8_t type = value[0];
    uint64_t size = 0;
    if ((type & 0xe0) == 0xa0 || type <= 0x7f)
        return true; //  fixstr, positive fixint
    if ((type == 0xd9 || type == 0xcc) && len >= 2)
        size = value[1];
    else if ((type == 0xda || type == 0xcd) && len >= 3)
        size = (uint64_t) value[1] << 8 | value[2];
    else if ((type == 0xdb || type == 0xce) && len >= 5)
        size = zcq_get_be32 (value + 1);
    else if (type == 0xcf && len >= 9)
        size = zcq_get_be64 (value + 1);
    else
        return false;
    switch (type) {
        case 0xd9: return size >= 32;
        case 0xda: return size >= 256;
        case 0xdb: return size >= 65536;
        case 0xcc: return size >= 128;
        case 0xcd: return size >= 256;
        case 0xce: return size >= 65536;
        default: return size >= (1ULL << 32);
    }
}

//  Encode a row's field value into writer; false when the row lacks it.
static bool
s_field_value (zcq_viewtable_t *self, const void *row, size_t row_len, const char *field,
               zcq_writer_t *writer)
{
    //  find the field's bytes without decoding the row, then re-encode just
    //  that value in its shortest form (DESIGN 3)
    zcq_writer_reset (writer);
    const void *raw;
    size_t raw_len;
    if (!row || !zcq_msgpack_peek (row, row_len, field, &raw, &raw_len))
        return false;
    if (s_shortest (raw, raw_len)) {
        zcq_writer_raw (writer, raw, raw_len);
        return zcq_writer_ok (writer);
    }
    if (zcq_doc_decode_trusted (self->doc, raw, raw_len) != ZCQ_OK)
        return false;
    zcq_writer_value (writer, zcq_doc_root (self->doc));
    return zcq_writer_ok (writer);
}

//  Build [u32 value length][value][key] in self->composite.
static size_t
s_composite (zcq_viewtable_t *self, const void *value, size_t value_len, const char *key,
             size_t key_len)
{
    size_t size = 4 + value_len + key_len;
    if (size > self->composite_size) {
        char *composite = realloc (self->composite, size);
        if (!composite)
            return 0;
        self->composite = composite;
        self->composite_size = size;
    }
    uint8_t *bytes = (uint8_t *) self->composite;
    zcq_put_be32 (bytes, (uint32_t) value_len);
    memcpy (bytes + 4, value, value_len);
    memcpy (bytes + 4 + value_len, key, key_len);
    return size;
}

static zcq_err_t
s_index_remove (zcq_viewtable_t *self, s_index_t *index, const void *value, size_t value_len,
                const char *key, size_t key_len)
{
    size_t size = s_composite (self, value, value_len, key, key_len);
    if (!size)
        return ZCQ_NOMEM;
    s_node_t *node = s_skiplist_remove (&index->list, self->composite, size, &self->memory);
    if (node) {
        free (node);
        s_count_add (self, index, value, value_len, -1);
    }
    return ZCQ_OK;
}

static zcq_err_t
s_index_add (zcq_viewtable_t *self, s_index_t *index, const void *value, size_t value_len,
             const char *key, size_t key_len, s_node_t *row_node)
{
    size_t size = s_composite (self, value, value_len, key, key_len);
    if (!size)
        return ZCQ_NOMEM;
    s_node_t *node = s_skiplist_insert (&index->list, self->composite, size, &self->memory);
    if (!node || !s_count_add (self, index, value, value_len, 1))
        return ZCQ_NOMEM;
    node->payload = row_node;
    return ZCQ_OK;
}

//  Move the index entries of key from the old row's values to the new
//  row's (DESIGN 2, 3).
static zcq_err_t
s_reindex (zcq_viewtable_t *self, const char *key, size_t key_len, const void *old_row,
           size_t old_len, const void *new_row, size_t new_len, s_node_t *row_node)
{
    for (size_t position = 0; position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        //  the same bytes in both rows: nothing to move (most changes)
        const void *old_raw, *new_raw;
        size_t old_raw_len, new_raw_len;
        if (old_row && new_row
            && zcq_msgpack_peek (old_row, old_len, index->field, &old_raw, &old_raw_len)
            && zcq_msgpack_peek (new_row, new_len, index->field, &new_raw, &new_raw_len)
            && old_raw_len == new_raw_len && memcmp (old_raw, new_raw, old_raw_len) == 0)
            continue;
        bool had = s_field_value (self, old_row, old_len, index->field, self->old_value);
        bool has = s_field_value (self, new_row, new_len, index->field, self->new_value);
        size_t old_size = zcq_writer_size (self->old_value);
        size_t new_size = zcq_writer_size (self->new_value);
        if (had && has && old_size == new_size
            && memcmp (zcq_writer_data (self->old_value), zcq_writer_data (self->new_value),
                       old_size)
                   == 0)
            continue;
        if (had)
            ZCQ_TRY (s_index_remove (self, index, zcq_writer_data (self->old_value), old_size, key,
                                     key_len));
        if (has)
            ZCQ_TRY (s_index_add (self, index, zcq_writer_data (self->new_value), new_size, key,
                                  key_len, row_node));
    }
    return ZCQ_OK;
}

//  Make room in the hash table for one more row.
static bool
s_slots_reserve (zcq_viewtable_t *self)
{
    return (self->rows.count + 1) * 4 <= self->slot_count * 3 || s_slots_grow (self);
}

zcq_err_t
zcq_viewtable_put (zcq_viewtable_t *self, const char *key, size_t key_len, const void *row,
                   size_t row_len)
{
    if (key_len > UINT32_MAX || row_len > UINT32_MAX)
        return ZCQ_INVALID;
    uint64_t hash = zcq_hash (key, key_len);
    size_t slot = s_slot_of (self, key, key_len, hash);
    s_node_t *node = s_slot_node (self->slots[slot]);
    if (node && node->row_len == row_len && row_len) {
        //  a row of the same size (a changed balance, say) is rewritten in
        //  place: no allocation
        zcq_err_t err = ZCQ_OK;
        if (self->index_count)
            err = s_reindex (self, key, key_len, node->payload, row_len, row, row_len, node);
        memcpy (node->payload, row, row_len);
        return err;
    }
    void *copy = malloc (row_len ? row_len : 1);
    if (!copy)
        return ZCQ_NOMEM;
    memcpy (copy, row, row_len);
    void *old_row = NULL;
    size_t old_len = 0;
    if (node) {
        old_row = node->payload;
        old_len = node->row_len;
        self->memory -= old_len;
    }
    else {
        if (!s_slots_reserve (self)) {
            free (copy);
            return ZCQ_NOMEM;
        }
        slot = s_slot_of (self, key, key_len, hash);
        node = s_skiplist_insert (&self->rows, key, key_len, &self->memory);
        if (!node) {
            free (copy);
            return ZCQ_NOMEM;
        }
        self->slots[slot] = s_slot_make (node, hash);
    }
    node->payload = copy;
    node->row_len = (uint32_t) row_len;
    self->memory += row_len;
    zcq_err_t err = ZCQ_OK;
    if (self->index_count)
        err = s_reindex (self, key, key_len, old_row, old_len, copy, row_len, node);
    free (old_row);
    return err;
}

bool
zcq_viewtable_reserve (zcq_viewtable_t *self, size_t rows)
{
    while (rows * 4 > self->slot_count * 3)
        if (!s_slots_grow (self))
            return false;
    return true;
}

//  Append a row (no index entries) whose key must be the greatest.
static zcq_err_t
s_append_row (zcq_viewtable_t *self, const char *key, size_t key_len, const void *row,
              size_t row_len, s_node_t **node_p)
{
    if (key_len > UINT32_MAX || row_len > UINT32_MAX)
        return ZCQ_INVALID;
    void *copy = malloc (row_len ? row_len : 1);
    if (!copy || !s_slots_reserve (self)) {
        free (copy);
        return ZCQ_NOMEM;
    }
    memcpy (copy, row, row_len);
    bool in_order;
    s_node_t *node = s_skiplist_append (&self->rows, key, key_len, &self->memory, &in_order);
    if (!node) {
        free (copy);
        return in_order ? ZCQ_NOMEM : ZCQ_INVALID;
    }
    uint64_t hash = zcq_hash (key, key_len);
    self->slots[s_slot_of (self, key, key_len, hash)] = s_slot_make (node, hash);
    node->payload = copy;
    node->row_len = (uint32_t) row_len;
    self->memory += row_len;
    *node_p = node;
    return ZCQ_OK;
}

bool
zcq_viewtable_delete (zcq_viewtable_t *self, const char *key, size_t key_len)
{
    size_t slot = s_slot_of (self, key, key_len, zcq_hash (key, key_len));
    s_node_t *node = s_slot_node (self->slots[slot]);
    if (!node)
        return false;
    if (self->index_count)
        s_reindex (self, key, key_len, node->payload, node->row_len, NULL, 0, node);
    s_slots_remove (self, slot);
    self->memory -= node->row_len;
    free (node->payload);
    s_node_t *removed = s_skiplist_remove (&self->rows, key, key_len, &self->memory);
    free (removed);
    return true;
}

const void *
zcq_viewtable_get (const zcq_viewtable_t *self, const char *key, size_t key_len, size_t *row_len)
{
    s_node_t *node
        = s_slot_node (self->slots[s_slot_of (self, key, key_len, zcq_hash (key, key_len))]);
    if (!node)
        return NULL;
    *row_len = node->row_len;
    return node->payload;
}

size_t
zcq_viewtable_count (const zcq_viewtable_t *self)
{
    return self->rows.count;
}

static s_index_t *
s_index (const zcq_viewtable_t *self, const char *field)
{
    for (size_t index = 0; index < self->index_count; index++)
        if (strcmp (self->indexes[index].field, field) == 0)
            return &self->indexes[index];
    return NULL;
}

bool
zcq_viewtable_has_index (const zcq_viewtable_t *self, const char *field)
{
    return s_index (self, field) != NULL;
}

size_t
zcq_viewtable_count_value (const zcq_viewtable_t *self, const char *field, const void *value,
                           size_t value_len)
{
    s_index_t *index = s_index (self, field);
    if (!index)
        return 0;
    s_count_t *entry = s_count_slot (index, value, value_len, zcq_hash (value, value_len));
    return entry->value ? entry->count : 0;
}

size_t
zcq_viewtable_list (const zcq_viewtable_t *self, const char *after, size_t after_len, size_t limit,
                    zcq_row_fn *fn, void *arg, bool *more)
{
    s_node_t *node = s_skiplist_after (&self->rows, after, after_len);
    size_t given = 0;
    while (node && given < limit) {
        given++;
        if (fn (arg, s_key (node), node->key_len, node->payload, node->row_len)) {
            node = node->forward[0];
            break;
        }
        node = node->forward[0];
    }
    if (more)
        *more = node != NULL;
    return given;
}

//  True when an index node's composite key has the value as its prefix.
static bool
s_has_value (const s_node_t *node, const uint8_t *value, size_t value_len)
{
    const uint8_t *key = (const uint8_t *) s_key (node);
    return node->key_len >= 4 + value_len && zcq_get_be32 (key) == value_len
        && memcmp (key + 4, value, value_len) == 0;
}

size_t
zcq_viewtable_list_value (const zcq_viewtable_t *self, const char *field, const void *value,
                          size_t value_len, const char *after, size_t after_len, size_t limit,
                          zcq_row_fn *fn, void *arg, bool *more)
{
    if (more)
        *more = false;
    s_index_t *index = s_index (self, field);
    if (!index)
        return 0;
    //  the seek key, in a buffer of our own: callbacks may read the table
    size_t start_len = 4 + value_len + (after ? after_len : 0);
    char local[512];
    char *start = start_len <= sizeof local ? local : malloc (start_len);
    if (!start)
        return 0;
    uint8_t *bytes = (uint8_t *) start;
    zcq_put_be32 (bytes, (uint32_t) value_len);
    memcpy (bytes + 4, value, value_len);
    if (after)
        memcpy (bytes + 4 + value_len, after, after_len);
    s_node_t *node = after ? s_skiplist_after (&index->list, start, start_len)
                           : s_skiplist_seek (&index->list, start, start_len, NULL);
    if (start != local)
        free (start);
    size_t given = 0;
    while (node && given < limit && s_has_value (node, value, value_len)) {
        s_node_t *row = node->payload;
        given++;
        node = node->forward[0];
        if (fn (arg, s_key (row), row->key_len, row->payload, row->row_len))
            break;
    }
    if (more)
        *more = node && s_has_value (node, value, value_len);
    return given;
}

//  --------------------------------------------------------------------------
//  Snapshots (viewsnap.c): rows go out in key order, numbered 0, 1, ...;
//  each index goes out as the row numbers in its order, so that loading
//  appends every entry instead of searching for its place.

size_t
zcq_viewtable_index_count (const zcq_viewtable_t *self)
{
    return self->index_count;
}

const char *
zcq_viewtable_index_field (const zcq_viewtable_t *self, size_t index)
{
    return self->indexes[index].field;
}

size_t
zcq_viewtable_index_size (const zcq_viewtable_t *self, size_t index)
{
    return self->indexes[index].list.count;
}

void
zcq_viewtable_index_order (const zcq_viewtable_t *self, size_t index, uint8_t *rows)
{
    //  number the rows in the marks (scratch, not table state)
    uint32_t number = 0;
    for (s_node_t *node = self->rows.head->forward[0]; node; node = node->forward[0])
        node->mark = number++;
    for (s_node_t *node = self->indexes[index].list.head->forward[0]; node;
         node = node->forward[0]) {
        zcq_put_be32 (rows, ((s_node_t *) node->payload)->mark);
        rows += 4;
    }
}

zcq_err_t
zcq_viewtable_load_row (zcq_viewtable_t *self, const char *key, size_t key_len, const void *row,
                        size_t row_len)
{
    if (self->loaded_count >= UINT32_MAX)
        return ZCQ_INVALID;
    if (self->loaded_count == self->loaded_capacity) {
        size_t capacity = self->loaded_capacity ? self->loaded_capacity * 2 : 1024;
        s_node_t **loaded = realloc (self->loaded, capacity * sizeof (s_node_t *));
        if (!loaded)
            return ZCQ_NOMEM;
        self->loaded = loaded;
        self->loaded_capacity = capacity;
    }
    s_node_t *node;
    ZCQ_TRY (s_append_row (self, key, key_len, row, row_len, &node));
    self->loaded[self->loaded_count++] = node;
    return ZCQ_OK;
}

zcq_err_t
zcq_viewtable_load_index (zcq_viewtable_t *self, const char *field, size_t field_len,
                          const uint8_t *rows, size_t count)
{
    size_t position = 0;
    while (position < self->index_count
           && (strlen (self->indexes[position].field) != field_len
               || memcmp (self->indexes[position].field, field, field_len) != 0))
        position++;
    if (position == self->index_count)
        return ZCQ_OK; //  an index the view no longer has
    if (!self->index_loaded && !(self->index_loaded = calloc (self->index_count, sizeof (bool))))
        return ZCQ_NOMEM;
    s_index_t *index = &self->indexes[position];
    if (self->index_loaded[position] || count > self->loaded_count)
        return ZCQ_INVALID;
    for (size_t entry = 0; entry < count; entry++, rows += 4) {
        uint32_t number = zcq_get_be32 (rows);
        if (number >= self->loaded_count)
            return ZCQ_INVALID;
        //  rows come in the index's order, not in memory's: fetch the
        //  nodes, and then their rows, a few entries ahead
        if (entry + 16 < count && zcq_get_be32 (rows + 64) < self->loaded_count)
            __builtin_prefetch (self->loaded[zcq_get_be32 (rows + 64)]);
        if (entry + 8 < count && zcq_get_be32 (rows + 32) < self->loaded_count)
            __builtin_prefetch (self->loaded[zcq_get_be32 (rows + 32)]->payload);
        s_node_t *row = self->loaded[number];
        if (!s_field_value (self, row->payload, row->row_len, index->field, self->new_value))
            return ZCQ_INVALID;
        size_t size = s_composite (self, zcq_writer_data (self->new_value),
                                   zcq_writer_size (self->new_value), s_key (row), row->key_len);
        bool in_order;
        s_node_t *node = size ? s_skiplist_append (&index->list, self->composite, size,
                                                   &self->memory, &in_order)
                              : NULL;
        if (!node)
            return size && !in_order ? ZCQ_INVALID : ZCQ_NOMEM;
        node->payload = row;
        if (!s_count_add (self, index, zcq_writer_data (self->new_value),
                          zcq_writer_size (self->new_value), 1))
            return ZCQ_NOMEM;
    }
    self->index_loaded[position] = true;
    return ZCQ_OK;
}

zcq_err_t
zcq_viewtable_load_done (zcq_viewtable_t *self)
{
    zcq_err_t err = ZCQ_OK;
    for (size_t position = 0; err == ZCQ_OK && position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        bool given = self->index_loaded && self->index_loaded[position];
        size_t having = 0;
        for (size_t number = 0; err == ZCQ_OK && number < self->loaded_count; number++) {
            s_node_t *row = self->loaded[number];
            const void *raw;
            size_t raw_len;
            if (given)
                having
                    += zcq_msgpack_peek (row->payload, row->row_len, index->field, &raw, &raw_len);
            else if (s_field_value (self, row->payload, row->row_len, index->field,
                                    self->new_value))
                err = s_index_add (self, index, zcq_writer_data (self->new_value),
                                   zcq_writer_size (self->new_value), s_key (row), row->key_len,
                                   row);
        }
        //  an index that leaves out rows that have the field is damaged
        if (given && having != index->list.count)
            err = ZCQ_INVALID;
    }
    free (self->loaded);
    self->loaded = NULL;
    self->loaded_count = self->loaded_capacity = 0;
    free (self->index_loaded);
    self->index_loaded = NULL;
    return err;
}

size_t
zcq_viewtable_memory (const zcq_viewtable_t *self)
{
    return self->memory;
}
