/*  view.c: zcq_viewtable_t, the in-memory table behind every view.

    DESIGN
    1.  Rows live in a skip list ordered by key (p = 1/4, so 1.33 forward
        pointers per row on average) and in an open-addressing hash table
        of node pointers for O(1) look-ups. A node carries its key inline
        and points to its row.
    2.  Each index is a skip list of composite keys
        [u32 value length][encoded value][row key], so the rows with one
        value are contiguous and in key order, plus a count per value.
    3.  An index entry exists only for rows that have the field. Values are
        compared as encoded bytes in their shortest form (how the writer
        encodes them, so equal values encode equally).
    4.  A row is a record (s_row_t): a cell per field, the field's name an
        id in the table's names, numbers as numbers, strings as their bytes,
        anything else as its encoded bytes. A handler's changes apply to the
        cells: an integer add is an add, and when no field comes, goes or
        changes its size the row changes in place. A row is encoded only
        when a read needs its bytes, and that encoding is kept until the row
        changes (a snapshot encodes rows without keeping them). A row put
        as bytes that a record could not give back exactly (not a map, a
        map header or key string wider than it needs, over 65535 fields),
        and a row loaded from a snapshot, stay bytes until a handler
        changes them.
    5.  A new table takes rows in bulk: they go into the hash table and a
        list of pending rows only. The first read that needs order, or
        zcq_viewtable_settle when a rebuild or a catch-up is over, sorts the
        pending rows by key (a radix sort on 8-byte key prefixes), links
        them into the skip list by appending, and builds each index in one
        pass (its rows grouped by value, in key order, then appended). From
        then on every change keeps the structures as it goes. A table
        loaded from a snapshot comes in key order and is built the same way.
    6.  Nodes (a row's node holds its record too, when it fits) are cut
        from blocks the table owns, by 16-byte size classes, and a freed
        node goes back to its class. A thread's malloc arena grows a page at
        a time, an mprotect call each, which made a good part of what
        building a million rows cost. The blocks go with the table. A large
        hash table is asked for in huge pages, since every probe lands on a
        page of its own; the blocks are not (on the 2-core VM of the bench
        the kernel's zeroing of 2 MiB pages cost more than their TLB misses
        saved).
*/
#include "zcq_internal.h"
#include <string.h>
#include <sys/mman.h>

#define S_HUGE_PAGE    (2u << 20)
#define S_MAX_LEVEL    24
#define S_COUNT_SLOTS  64 //  initial and smallest value-count table
#define S_NAME_SLOTS   64 //  initial name hash table (a power of 2)
#define S_NAME_BYTES   512
#define S_NAME_MAX_LEN 1024   //  longer field names are not interned
#define S_NO_NAME      0xffff //  a cell without an interned name
#define S_NAMES_MAX    0xfffe
#define S_CELLS_MAX    0xffff
#define S_ROW_SLACK    32 //  bytes a row may shrink by and keep its block
#define S_NO_GROUP     UINT32_MAX

typedef struct s_node_t {
    void *payload; //  primary: the row (s_row_t, or bytes); index: primary node
    uint32_t key_len;
    uint32_t row_len; //  a row held as bytes: their length
    uint32_t mark;    //  scratch: the row's number while a snapshot is taken;
                      //  while rows are pending, its place in that list
    uint8_t level;
    bool typed;                 //  payload is an s_row_t
    uint16_t inline_size;       //  bytes for a record after the key (DESIGN 4)
    struct s_node_t *forward[]; //  `level` pointers, then the key bytes
} s_node_t;

//  Where nodes come from (DESIGN 6), and the bytes the table holds.
#define S_PIECE_MAX     512 //  larger nodes come from malloc
#define S_PIECE_CLASSES (S_PIECE_MAX / 16 + 1)
#define S_BLOCK_FIRST   (64u << 10)
#define S_BLOCK_MAX     (2u << 20)
typedef struct {
    size_t memory;               //  what zcq_viewtable_memory reports
    void *free[S_PIECE_CLASSES]; //  freed pieces of each 16-byte class
    uint8_t *bump;               //  the rest of the newest block
    size_t bump_left;
    void **blocks;
    size_t block_count;
    size_t block_capacity;
} s_heap_t;

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
    uint16_t name;     //  the field's id in the table's names
    bool built;        //  entries and counts hold every row (DESIGN 5)
    bool had;          //  scratch: the changing row had the field
    zcq_writer_t *was; //  scratch: its value then
    s_skiplist_t list;
    s_count_t *counts; //  open addressing by value
    size_t count_slots;
    size_t count_used;
} s_index_t;

//  A record's cell (DESIGN 4)
typedef enum {
    S_NIL,
    S_BOOL,
    S_INT,
    S_FLOAT,
    S_STR, //  bytes in the area
    S_RAW, //  one encoded value in the area
    S_KEY, //  a string equal to the row's key
    S_PAIR //  no interned name: the encoded key and value in the area
} s_kind_t;

typedef struct {
    uint16_t name;
    uint8_t kind;
    uint8_t unused;
    uint32_t len; //  S_STR, S_RAW, S_PAIR: bytes in the area
    union {
        int64_t i;
        double f;
        bool b;
        uint64_t at; //  S_STR, S_RAW, S_PAIR: where in the area
    } as;
} s_cell_t;

#define S_ROW_SLOW 1 //  repeated names or named pairs: changes take the long way

typedef struct {
    uint32_t capacity; //  bytes of the block
    uint32_t area;     //  bytes of the area (after the cells) in use
    uint32_t cache_len;
    uint16_t count; //  cells
    uint8_t flags;
    uint8_t unused;
    uint8_t *cache; //  the row encoded, until it changes; NULL until read
    s_cell_t cells[];
} s_row_t;

static inline uint8_t *
s_area (const s_row_t *row)
{
    return (uint8_t *) &row->cells[row->count];
}

typedef struct {
    uint32_t at;
    uint32_t len;
    uint64_t hash;
} s_name_t;

typedef struct {
    uint8_t *bytes;
    size_t size;
    size_t capacity;
} s_buffer_t;

//  A row waiting for the skip list, and what the sort orders it by.
typedef struct {
    uint64_t prefix; //  8 key bytes from the sort's depth, big-endian
    s_node_t *node;
} s_pending_t;

struct zcq_viewtable_t {
    s_skiplist_t rows;
    size_t count;    //  rows, linked or pending
    uint64_t *slots; //  hash table of row nodes (tagged pointers)
    size_t slot_count;
    s_heap_t heap;
    s_index_t *indexes;
    size_t index_count;
    //  names of fields (DESIGN 4)
    s_name_t *names;
    size_t name_count;
    size_t name_capacity;
    s_buffer_t name_bytes;
    uint16_t *name_slots;
    size_t name_slot_count;
    //  rows in bulk (DESIGN 5)
    bool bulk;
    s_pending_t *pending;
    size_t pending_count;
    size_t pending_capacity;
    //  scratch
    zcq_doc_t *doc;
    zcq_writer_t *value;
    char *composite;
    size_t composite_size;
    s_cell_t *cells; //  a record being built
    size_t cell_capacity;
    s_buffer_t area;
    s_buffer_t encoded;     //  a record encoded for a dump
    uint16_t *change_names; //  the names of a merge's changes
    size_t change_capacity;
    uint64_t *seen;    //  a bit per name id, zero between uses
    s_node_t **loaded; //  rows appended by zcq_viewtable_load_row, in order
    size_t loaded_count;
    size_t loaded_capacity;
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

//  Where a record kept in the node's own block starts: after the key, on
//  a word boundary.
static inline size_t
s_inline_at (size_t level, size_t key_len)
{
    return (sizeof (s_node_t) + level * sizeof (s_node_t *) + key_len + 7) & ~(size_t) 7;
}

static inline void *
s_inline (const s_node_t *node)
{
    return (uint8_t *) node + s_inline_at (node->level, node->key_len);
}

static inline size_t
s_node_size (const s_node_t *node)
{
    if (node->inline_size)
        return s_inline_at (node->level, node->key_len) + node->inline_size;
    return sizeof (s_node_t) + (size_t) node->level * sizeof (s_node_t *) + node->key_len;
}

//  Room for len more bytes; false when out of memory.
static bool
s_buffer_reserve (s_buffer_t *buffer, size_t len)
{
    if (buffer->size + len <= buffer->capacity)
        return true;
    size_t capacity = buffer->capacity ? buffer->capacity : 256;
    while (capacity < buffer->size + len)
        capacity *= 2;
    uint8_t *bytes = realloc (buffer->bytes, capacity);
    if (!bytes)
        return false;
    buffer->bytes = bytes;
    buffer->capacity = capacity;
    return true;
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
    list->tail_valid = false;
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

//  --------------------------------------------------------------------------
//  Pieces (DESIGN 6): nodes of up to S_PIECE_MAX bytes are cut from blocks
//  the table holds, in 16-byte classes, and go back to their class's free
//  list. Blocks double from 64 KiB to 2 MiB (large enough for malloc to map
//  them on their own, with no arena to grow).

//  The size of the table's block number `block`: doubling to S_BLOCK_MAX.
static size_t
s_block_size (size_t block)
{
    return block < 6 ? (size_t) S_BLOCK_FIRST << block : S_BLOCK_MAX;
}

static void *
s_piece_alloc (s_heap_t *heap, size_t size)
{
    size_t class = (size + 15) >> 4;
    if (class >= S_PIECE_CLASSES)
        return malloc (size);
    void *piece = heap->free[class];
    if (piece) {
        memcpy (&heap->free[class], piece, sizeof (void *));
        return piece;
    }
    size = class << 4;
    if (heap->bump_left < size) {
        if (heap->block_count == heap->block_capacity) {
            size_t capacity = heap->block_capacity ? heap->block_capacity * 2 : 16;
            void **blocks = realloc (heap->blocks, capacity * sizeof (void *));
            if (!blocks)
                return NULL;
            heap->blocks = blocks;
            heap->block_capacity = capacity;
        }
        size_t block_size = s_block_size (heap->block_count);
        void *block = NULL;
        if (posix_memalign (&block, 64, block_size) != 0)
            return NULL;
        heap->blocks[heap->block_count++] = block;
        heap->bump = block;
        heap->bump_left = block_size;
    }
    piece = heap->bump;
    heap->bump += size;
    heap->bump_left -= size;
    return piece;
}

static void
s_piece_free (s_heap_t *heap, void *piece, size_t size)
{
    size_t class = (size + 15) >> 4;
    if (class >= S_PIECE_CLASSES) {
        free (piece);
        return;
    }
    memcpy (piece, &heap->free[class], sizeof (void *));
    heap->free[class] = piece;
}

static void
s_heap_free (s_heap_t *heap)
{
    for (size_t block = 0; block < heap->block_count; block++)
        free (heap->blocks[block]);
    free (heap->blocks);
}

//  A node for key at a random level, with room for a record of `record`
//  bytes in its block (0: none); NULL when out of memory.
static s_node_t *
s_node_new (s_skiplist_t *list, const char *key, size_t key_len, size_t record, s_heap_t *heap)
{
    int level = s_random_level (list);
    size_t size = sizeof (s_node_t) + (size_t) level * sizeof (s_node_t *) + key_len;
    size_t inline_size = 0;
    if (record) {
        //  pieces come in 16-byte classes: the record gets the rest of its
        //  piece as room to grow
        size_t at = s_inline_at ((size_t) level, key_len);
        size_t piece = (at + record + 15) & ~(size_t) 15;
        if (piece - at <= UINT16_MAX) {
            inline_size = piece - at;
            size = piece;
        }
    }
    s_node_t *node = s_piece_alloc (heap, size);
    if (!node)
        return NULL;
    node->payload = NULL;
    node->key_len = (uint32_t) key_len;
    node->row_len = 0;
    node->mark = 0;
    node->level = (uint8_t) level;
    node->typed = false;
    node->inline_size = (uint16_t) inline_size;
    memcpy ((char *) &node->forward[level], key, key_len);
    heap->memory += size;
    return node;
}

static void
s_node_free (s_heap_t *heap, s_node_t *node)
{
    s_piece_free (heap, node, s_node_size (node));
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

//  Insert a node for key (which must be absent), with room for a record;
//  NULL when out of memory.
static s_node_t *
s_skiplist_insert (s_skiplist_t *list, const char *key, size_t key_len, size_t record,
                   s_heap_t *heap)
{
    s_node_t *update[S_MAX_LEVEL];
    s_skiplist_seek (list, key, key_len, update);
    list->tail_valid = false;
    s_node_t *node = s_node_new (list, key, key_len, record, heap);
    if (node)
        s_skiplist_link (list, node, update);
    return node;
}

//  Find the last node at each level, unless known.
static void
s_skiplist_tails (s_skiplist_t *list)
{
    if (list->tail_valid)
        return;
    s_node_t *last = list->head;
    for (int level = S_MAX_LEVEL - 1; level >= 0; level--) {
        while (last->forward[level])
            last = last->forward[level];
        list->tail[level] = last;
    }
    list->tail_valid = true;
}

//  Link a node whose key sorts after every key in the list: O(1) while
//  only appends follow each other.
static void
s_skiplist_link_last (s_skiplist_t *list, s_node_t *node)
{
    s_skiplist_tails (list);
    s_skiplist_link (list, node, list->tail);
    for (int index = 0; index < node->level; index++)
        list->tail[index] = node;
}

//  Add a node for a key that sorts after every key in the list. NULL when
//  out of memory or when the key is not the greatest (*in_order is then
//  false).
static s_node_t *
s_skiplist_append (s_skiplist_t *list, const char *key, size_t key_len, s_heap_t *heap,
                   bool *in_order)
{
    s_skiplist_tails (list);
    s_node_t *last = list->tail[0];
    *in_order = last == list->head || s_compare (s_key (last), last->key_len, key, key_len) < 0;
    if (!*in_order)
        return NULL;
    s_node_t *node = s_node_new (list, key, key_len, 0, heap);
    if (node)
        s_skiplist_link_last (list, node);
    return node;
}

//  Unlink the node for key and return it (the caller frees it).
static s_node_t *
s_skiplist_remove (s_skiplist_t *list, const char *key, size_t key_len, s_heap_t *heap)
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
    heap->memory -= s_node_size (node);
    return node;
}

//  Free every node of an index's list (not their payloads) and empty it.
static void
s_skiplist_clear (s_skiplist_t *list, s_heap_t *heap)
{
    s_node_t *node = list->head->forward[0];
    while (node) {
        s_node_t *next = node->forward[0];
        heap->memory -= s_node_size (node);
        s_node_free (heap, node);
        node = next;
    }
    memset (list->head->forward, 0, S_MAX_LEVEL * sizeof (s_node_t *));
    list->level = 1;
    list->count = 0;
    list->tail_valid = false;
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

//  A zeroed slot array; a large one in huge pages when the kernel gives
//  them: every probe lands on a page of its own, a TLB miss each.
static uint64_t *
s_slots_alloc (size_t count)
{
    size_t bytes = count * sizeof (uint64_t);
    if (bytes < S_HUGE_PAGE)
        return calloc (count, sizeof (uint64_t));
    void *slots = NULL;
    if (posix_memalign (&slots, S_HUGE_PAGE, bytes) != 0)
        return NULL;
    madvise (slots, bytes, MADV_HUGEPAGE); //  (a hint: else small pages)
    memset (slots, 0, bytes);
    return slots;
}

static bool
s_slots_grow (zcq_viewtable_t *self)
{
    size_t count = self->slot_count * 2;
    uint64_t *slots = s_slots_alloc (count);
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
    self->heap.memory += (count - old_count) * sizeof (uint64_t);
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

//  Make room in the hash table for one more row.
static bool
s_slots_reserve (zcq_viewtable_t *self)
{
    return (self->count + 1) * 4 <= self->slot_count * 3 || s_slots_grow (self);
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
    self->heap.memory
        = self->heap.memory - old_slots * sizeof (s_count_t) + slots * sizeof (s_count_t);
    return true;
}

//  Add to the count of a value (an entry appears for it when new).
static bool
s_count_add (zcq_viewtable_t *self, s_index_t *index, const char *value, size_t len, size_t added)
{
    if ((index->count_used + 1) * 4 > index->count_slots * 3
        && !s_count_resize (self, index, index->count_slots * 2))
        return false;
    uint64_t hash = zcq_hash (value, len);
    s_count_t *entry = s_count_slot (index, value, len, hash);
    if (!entry->value) {
        entry->value = malloc (len ? len : 1);
        if (!entry->value)
            return false;
        memcpy (entry->value, value, len);
        entry->len = (uint32_t) len;
        entry->hash = hash;
        entry->count = 0;
        index->count_used++;
        self->heap.memory += len;
    }
    entry->count += added;
    return true;
}

//  Take one from the count of a value; its entry goes at 0, and the table
//  shrinks when it is mostly empty.
static void
s_count_drop (zcq_viewtable_t *self, s_index_t *index, const char *value, size_t len)
{
    s_count_t *entry = s_count_slot (index, value, len, zcq_hash (value, len));
    if (!entry->value)
        return;
    if (entry->count > 1) {
        entry->count--;
        return;
    }
    self->heap.memory -= entry->len;
    s_count_remove (index, (size_t) (entry - index->counts));
    if (index->count_slots > S_COUNT_SLOTS && index->count_used * 8 < index->count_slots)
        s_count_resize (self, index, index->count_slots / 2);
}

//  Empty an index: no entries, no counts (its table back to the smallest).
static void
s_index_clear (zcq_viewtable_t *self, s_index_t *index)
{
    s_skiplist_clear (&index->list, &self->heap);
    for (size_t slot = 0; slot < index->count_slots; slot++)
        if (index->counts[slot].value) {
            self->heap.memory -= index->counts[slot].len;
            free (index->counts[slot].value);
            index->counts[slot] = (s_count_t) { 0 };
        }
    index->count_used = 0;
    if (index->count_slots > S_COUNT_SLOTS)
        s_count_resize (self, index, S_COUNT_SLOTS);
    index->built = false;
}

//  --------------------------------------------------------------------------
//  Field names (DESIGN 4): interned once per table, so that a cell holds
//  two bytes for its name and names compare as numbers.

static const char *
s_name_text (const zcq_viewtable_t *self, uint16_t name)
{
    return (const char *) self->name_bytes.bytes + self->names[name].at;
}

static bool
s_names_grow (zcq_viewtable_t *self)
{
    size_t count = self->name_slot_count * 2;
    uint16_t *slots = malloc (count * sizeof (uint16_t));
    if (!slots)
        return false;
    memset (slots, 0xff, count * sizeof (uint16_t));
    for (size_t name = 0; name < self->name_count; name++) {
        size_t slot = (size_t) self->names[name].hash & (count - 1);
        while (slots[slot] != S_NO_NAME)
            slot = (slot + 1) & (count - 1);
        slots[slot] = (uint16_t) name;
    }
    free (self->name_slots);
    self->heap.memory += (count - self->name_slot_count) * sizeof (uint16_t);
    self->name_slots = slots;
    self->name_slot_count = count;
    return true;
}

//  The id of a name, interned when add is true and there is room;
//  S_NO_NAME otherwise.
static uint16_t
s_name_id (zcq_viewtable_t *self, const void *name, size_t len, bool add)
{
    uint64_t hash = zcq_hash (name, len);
    size_t mask = self->name_slot_count - 1;
    size_t slot = (size_t) hash & mask;
    while (self->name_slots[slot] != S_NO_NAME) {
        const s_name_t *entry = &self->names[self->name_slots[slot]];
        if (entry->hash == hash && entry->len == len
            && memcmp (self->name_bytes.bytes + entry->at, name, len) == 0)
            return self->name_slots[slot];
        slot = (slot + 1) & mask;
    }
    if (!add || len > S_NAME_MAX_LEN || self->name_count >= S_NAMES_MAX)
        return S_NO_NAME;
    if (self->name_count == self->name_capacity) {
        size_t capacity = self->name_capacity * 2;
        s_name_t *names = realloc (self->names, capacity * sizeof (s_name_t));
        if (!names)
            return S_NO_NAME;
        self->heap.memory += (capacity - self->name_capacity) * sizeof (s_name_t);
        self->names = names;
        self->name_capacity = capacity;
    }
    size_t before = self->name_bytes.capacity;
    if (!s_buffer_reserve (&self->name_bytes, len + 1))
        return S_NO_NAME;
    self->heap.memory += self->name_bytes.capacity - before;
    uint16_t id = (uint16_t) self->name_count++;
    self->names[id] = (s_name_t) { (uint32_t) self->name_bytes.size, (uint32_t) len, hash };
    memcpy (self->name_bytes.bytes + self->name_bytes.size, name, len);
    self->name_bytes.bytes[self->name_bytes.size + len] = 0;
    self->name_bytes.size += len + 1;
    self->name_slots[slot] = id;
    if (self->name_count * 2 > self->name_slot_count)
        s_names_grow (self); //  (on failure the table is merely fuller)
    return id;
}

//  --------------------------------------------------------------------------
//  MessagePack in its shortest forms, as msgpack-c writes them (the writer
//  and these must agree byte for byte: equal rows encode equally).

static size_t
s_put_tagged (uint8_t *out, uint8_t tag, uint64_t value, int width)
{
    out[0] = tag;
    for (int index = 0; index < width; index++)
        out[1 + index] = (uint8_t) (value >> (8 * (width - 1 - index)));
    return 1 + (size_t) width;
}

static size_t
s_put_int (uint8_t *out, int64_t value)
{
    if (value < -(1LL << 5)) {
        if (value < -(1LL << 15))
            return value < -(1LL << 31) ? s_put_tagged (out, 0xd3, (uint64_t) value, 8)
                                        : s_put_tagged (out, 0xd2, (uint64_t) value, 4);
        return value < -(1LL << 7) ? s_put_tagged (out, 0xd1, (uint64_t) value, 2)
                                   : s_put_tagged (out, 0xd0, (uint64_t) value, 1);
    }
    if (value < (1LL << 7)) {
        out[0] = (uint8_t) value;
        return 1;
    }
    if (value < (1LL << 16))
        return value < (1LL << 8) ? s_put_tagged (out, 0xcc, (uint64_t) value, 1)
                                  : s_put_tagged (out, 0xcd, (uint64_t) value, 2);
    return value < (1LL << 32) ? s_put_tagged (out, 0xce, (uint64_t) value, 4)
                               : s_put_tagged (out, 0xcf, (uint64_t) value, 8);
}

static size_t
s_put_str_header (uint8_t *out, size_t len)
{
    if (len < 32) {
        out[0] = (uint8_t) (0xa0 | len);
        return 1;
    }
    return len < 256   ? s_put_tagged (out, 0xd9, len, 1)
         : len < 65536 ? s_put_tagged (out, 0xda, len, 2)
                       : s_put_tagged (out, 0xdb, len, 4);
}

static size_t
s_put_map_header (uint8_t *out, size_t count)
{
    if (count < 16) {
        out[0] = (uint8_t) (0x80 | count);
        return 1;
    }
    return count < 65536 ? s_put_tagged (out, 0xde, count, 2) : s_put_tagged (out, 0xdf, count, 4);
}

static size_t
s_put_float (uint8_t *out, double value)
{
    uint64_t bits;
    memcpy (&bits, &value, 8);
    return s_put_tagged (out, 0xcb, bits, 8);
}

//  --------------------------------------------------------------------------
//  Records (DESIGN 4)

static inline const uint8_t *
s_cell_bytes (const s_row_t *row, const s_cell_t *cell)
{
    return s_area (row) + cell->as.at;
}

//  Encode a cell's value (not its name) into out, which has room for
//  S_CELL_HEADER bytes more than the cell's bytes.
#define S_CELL_HEADER 9
static size_t
s_put_cell_value (uint8_t *out, const s_node_t *node, const s_row_t *row, const s_cell_t *cell)
{
    size_t used;
    switch (cell->kind) {
        case S_NIL: out[0] = 0xc0; return 1;
        case S_BOOL: out[0] = cell->as.b ? 0xc3 : 0xc2; return 1;
        case S_INT: return s_put_int (out, cell->as.i);
        case S_FLOAT: return s_put_float (out, cell->as.f);
        case S_STR:
            used = s_put_str_header (out, cell->len);
            memcpy (out + used, s_cell_bytes (row, cell), cell->len);
            return used + cell->len;
        case S_KEY:
            used = s_put_str_header (out, node->key_len);
            memcpy (out + used, s_key (node), node->key_len);
            return used + node->key_len;
        default: //  S_RAW, S_PAIR
            memcpy (out, s_cell_bytes (row, cell), cell->len);
            return cell->len;
    }
}

//  Bytes of a cell's value as s_put_cell_value writes it, at most.
static size_t
s_cell_room (const s_node_t *node, const s_cell_t *cell)
{
    return S_CELL_HEADER + (cell->kind == S_KEY ? node->key_len : cell->len);
}

//  Bytes of a record encoded, at most (exact but for number widths).
static size_t
s_row_room (const zcq_viewtable_t *self, const s_node_t *node)
{
    const s_row_t *row = node->payload;
    size_t room = 5;
    for (uint16_t index = 0; index < row->count; index++) {
        const s_cell_t *cell = &row->cells[index];
        if (cell->name != S_NO_NAME)
            room += 5 + self->names[cell->name].len;
        room += s_cell_room (node, cell);
    }
    return room;
}

//  Encode a record into out (room from s_row_room); returns the bytes.
static size_t
s_row_put (const zcq_viewtable_t *self, const s_node_t *node, uint8_t *out)
{
    const s_row_t *row = node->payload;
    size_t used = s_put_map_header (out, row->count);
    for (uint16_t index = 0; index < row->count; index++) {
        const s_cell_t *cell = &row->cells[index];
        if (cell->name != S_NO_NAME) {
            size_t len = self->names[cell->name].len;
            used += s_put_str_header (out + used, len);
            memcpy (out + used, s_name_text (self, cell->name), len);
            used += len;
        }
        used += s_put_cell_value (out + used, node, row, cell);
    }
    return used;
}

//  Bytes a row holds beyond its node's block.
static size_t
s_row_memory (const s_node_t *node)
{
    bool in_node = node->inline_size && node->payload == s_inline (node);
    if (!node->typed)
        return in_node ? 0 : node->row_len;
    const s_row_t *row = node->payload;
    return (in_node ? 0 : row->capacity) + row->cache_len;
}

static void
s_payload_free (s_node_t *node)
{
    if (node->typed)
        free (((s_row_t *) node->payload)->cache);
    if (!node->inline_size || node->payload != s_inline (node))
        free (node->payload);
    node->payload = NULL;
}

//  Forget a record's encoding (it changed).
static void
s_row_changed (zcq_viewtable_t *self, s_row_t *row)
{
    if (row->cache) {
        self->heap.memory -= row->cache_len;
        free (row->cache);
        row->cache = NULL;
        row->cache_len = 0;
    }
}

//  The row's encoded bytes: its own, or the record encoded (kept until it
//  changes). NULL when out of memory.
static const void *
s_row_bytes (zcq_viewtable_t *self, s_node_t *node, size_t *len)
{
    if (!node->typed) {
        *len = node->row_len;
        return node->payload;
    }
    s_row_t *row = node->payload;
    if (!row->cache) {
        size_t room = s_row_room (self, node);
        uint8_t *cache = malloc (room);
        if (!cache)
            return NULL;
        size_t used = s_row_put (self, node, cache);
        uint8_t *fitted = realloc (cache, used);
        row->cache = fitted ? fitted : cache;
        row->cache_len = (uint32_t) used;
        self->heap.memory += used;
    }
    *len = row->cache_len;
    return row->cache;
}

//  The first cell named name (an interned id), or NULL.
static s_cell_t *
s_cell_find (const s_row_t *row, uint16_t name)
{
    if (name == S_NO_NAME)
        return NULL;
    for (uint16_t index = 0; index < row->count; index++)
        if (row->cells[index].name == name)
            return (s_cell_t *) &row->cells[index];
    return NULL;
}

//  The string key of a pair cell, if it has one.
static bool
s_pair_name (const s_row_t *row, const s_cell_t *cell, const uint8_t **name, size_t *len)
{
    zcq_mp_t reader = { s_cell_bytes (row, cell), s_cell_bytes (row, cell) + cell->len };
    zcq_mp_item_t key;
    if (!zcq_mp_read (&reader, &key) || key.type != ZCQ_TYPE_STR)
        return false;
    *name = key.bytes;
    *len = key.len;
    return true;
}

//  A cell's integer, as zcq_value_int takes it (false: not an integer).
static bool
s_cell_int (const s_row_t *row, const s_cell_t *cell, int64_t *value)
{
    if (cell->kind == S_INT) {
        *value = cell->as.i;
        return true;
    }
    if (cell->kind != S_RAW)
        return false;
    zcq_mp_t reader = { s_cell_bytes (row, cell), s_cell_bytes (row, cell) + cell->len };
    zcq_mp_item_t item;
    return zcq_mp_read (&reader, &item) && zcq_mp_int (&item, value);
}

//  ---- Building a record in the scratch cells and area ----------------------

static s_cell_t *
s_cell_push (zcq_viewtable_t *self, size_t *count, uint16_t name, s_kind_t kind)
{
    if (*count >= S_CELLS_MAX)
        return NULL;
    if (*count == self->cell_capacity) {
        size_t capacity = self->cell_capacity ? self->cell_capacity * 2 : 16;
        s_cell_t *cells = realloc (self->cells, capacity * sizeof (s_cell_t));
        if (!cells)
            return NULL;
        self->cells = cells;
        self->cell_capacity = capacity;
    }
    s_cell_t *cell = &self->cells[(*count)++];
    *cell = (s_cell_t) { .name = name, .kind = (uint8_t) kind };
    return cell;
}

//  Put bytes in the scratch area for cell; false when out of memory.
static bool
s_cell_store (zcq_viewtable_t *self, s_cell_t *cell, const void *bytes, size_t len)
{
    if (len > UINT32_MAX || !s_buffer_reserve (&self->area, len))
        return false;
    cell->as.at = self->area.size;
    cell->len = (uint32_t) len;
    if (len)
        memcpy (self->area.bytes + self->area.size, bytes, len);
    self->area.size += len;
    return true;
}

//  A cell holding a scalar.
static bool
s_cell_scalar (zcq_viewtable_t *self, s_cell_t *cell, const zcq_scalar_t *value)
{
    switch (value->kind) {
        case ZCQ_SCALAR_NIL: cell->kind = S_NIL; return true;
        case ZCQ_SCALAR_BOOL:
            cell->kind = S_BOOL;
            cell->as.b = value->as.b;
            return true;
        case ZCQ_SCALAR_INT:
            cell->kind = S_INT;
            cell->as.i = value->as.i;
            return true;
        case ZCQ_SCALAR_FLOAT:
            cell->kind = S_FLOAT;
            cell->as.f = value->as.f;
            return true;
        case ZCQ_SCALAR_STR: cell->kind = S_STR; break;
        default: cell->kind = S_RAW; break;
    }
    return s_cell_store (self, cell, value->bytes, value->len);
}

//  A cell for a name the table could not intern: the pair encoded.
static bool
s_cell_pair (zcq_viewtable_t *self, s_cell_t *cell, const char *name, size_t len,
             const zcq_scalar_t *value)
{
    zcq_writer_reset (self->value);
    zcq_writer_strn (self->value, name, len);
    zcq_scalar_write (value, self->value);
    cell->kind = S_PAIR;
    return zcq_writer_ok (self->value)
        && s_cell_store (self, cell, zcq_writer_data (self->value), zcq_writer_size (self->value));
}

//  A copy of an existing cell of row into the scratch.
static bool
s_cell_copy (zcq_viewtable_t *self, size_t *count, const s_row_t *row, const s_cell_t *from)
{
    s_cell_t *cell = s_cell_push (self, count, from->name, (s_kind_t) from->kind);
    if (!cell)
        return false;
    *cell = *from;
    if (from->kind == S_STR || from->kind == S_RAW || from->kind == S_PAIR)
        return s_cell_store (self, cell, s_cell_bytes (row, from), from->len);
    return true;
}

//  Whether cells repeat a name, or have a pair with a string key.
static uint8_t
s_cells_flags (zcq_viewtable_t *self, const s_cell_t *cells, size_t count)
{
    uint8_t flags = 0;
    for (size_t index = 0; index < count; index++) {
        uint16_t name = cells[index].name;
        if (name == S_NO_NAME) {
            //  conservatively: a pair may be named by a string
            flags |= S_ROW_SLOW;
            continue;
        }
        uint64_t bit = 1ULL << (name & 63);
        if (self->seen[name >> 6] & bit)
            flags |= S_ROW_SLOW;
        self->seen[name >> 6] |= bit;
    }
    for (size_t index = 0; index < count; index++)
        if (cells[index].name != S_NO_NAME)
            self->seen[cells[index].name >> 6] = 0;
    return flags;
}

//  Bytes of a record of count cells and area bytes.
static inline size_t
s_row_size (size_t count, size_t area)
{
    return sizeof (s_row_t) + count * sizeof (s_cell_t) + area;
}

//  Make the scratch record the row of node: in its block when that fits,
//  else in a new one. Returns false when out of memory (node unchanged).
static bool
s_row_install (zcq_viewtable_t *self, s_node_t *node, size_t count)
{
    size_t size = s_row_size (count, self->area.size);
    if (size > UINT32_MAX)
        return false;
    s_row_t *row = node->typed ? node->payload : NULL;
    bool in_node = row && node->inline_size && (void *) row == s_inline (node);
    //  the record's block when it fits (in the node: always, it is paid
    //  for; apart: unless it would waste too much), else the node's room
    //  when free and large enough, else a block of its own
    bool reuse = row && size <= row->capacity && (in_node || row->capacity - size <= S_ROW_SLACK);
    if (!reuse) {
        bool room = !in_node && size <= node->inline_size;
        s_row_t *fresh = room ? s_inline (node) : malloc (size);
        if (!fresh)
            return false;
        if (node->payload) {
            self->heap.memory -= s_row_memory (node);
            s_payload_free (node);
        }
        row = fresh;
        row->capacity = room ? node->inline_size : (uint32_t) size;
        row->cache = NULL;
        row->cache_len = 0;
        if (!room)
            self->heap.memory += size;
    }
    else
        s_row_changed (self, row);
    row->count = (uint16_t) count;
    row->area = (uint32_t) self->area.size;
    row->flags = s_cells_flags (self, self->cells, count);
    row->unused = 0;
    if (count)
        memcpy (row->cells, self->cells, count * sizeof (s_cell_t));
    if (self->area.size)
        memcpy (s_area (row), self->area.bytes, self->area.size);
    node->payload = row;
    node->typed = true;
    node->row_len = 0;
    return true;
}

//  The scratch record in a block of its own (the caller frees it); NULL
//  when out of memory.
static s_row_t *
s_row_detach (zcq_viewtable_t *self, size_t count)
{
    s_row_t *row = malloc (s_row_size (count, self->area.size));
    if (!row)
        return NULL;
    row->capacity = (uint32_t) s_row_size (count, self->area.size);
    row->count = (uint16_t) count;
    row->area = (uint32_t) self->area.size;
    row->flags = s_cells_flags (self, self->cells, count);
    row->unused = 0;
    row->cache = NULL;
    row->cache_len = 0;
    if (count)
        memcpy (row->cells, self->cells, count * sizeof (s_cell_t));
    if (self->area.size)
        memcpy (s_area (row), self->area.bytes, self->area.size);
    return row;
}

//  Read an encoded map into the scratch cells; the count of cells, or -1
//  when the bytes are not one map. Exact: -1 also when a record would not
//  encode back to the same bytes (a map header or a key's string header
//  wider than needed); values that would not stay as they are held as
//  their bytes. Not exact: keys and numbers take their shortest forms.
static long
s_row_parse (zcq_viewtable_t *self, const void *bytes, size_t len, const char *key, size_t key_len,
             bool exact)
{
    zcq_mp_t reader = { bytes, (const uint8_t *) bytes + len };
    zcq_mp_item_t map;
    self->area.size = 0;
    if (!bytes || !zcq_mp_read (&reader, &map) || map.type != ZCQ_TYPE_MAP || map.len > S_CELLS_MAX)
        return -1;
    uint8_t canonical[S_CELL_HEADER];
    if (exact
        && (size_t) (reader.cursor - (const uint8_t *) bytes)
               != s_put_map_header (canonical, map.len))
        return -1;
    size_t count = 0;
    for (uint32_t entry = 0; entry < map.len; entry++) {
        const uint8_t *key_at = reader.cursor;
        zcq_mp_item_t name;
        if (!zcq_mp_read (&reader, &name))
            return -1;
        uint16_t id = S_NO_NAME;
        if (name.type == ZCQ_TYPE_STR) {
            if (exact && (size_t) (name.bytes - key_at) != s_put_str_header (canonical, name.len))
                return -1;
            id = s_name_id (self, name.bytes, name.len, true);
        }
        else if (name.type == ZCQ_TYPE_ARRAY || name.type == ZCQ_TYPE_MAP) {
            reader.cursor = key_at;
            if (!zcq_mp_skip (&reader, 1))
                return -1;
        }
        const uint8_t *value_at = reader.cursor;
        zcq_mp_item_t value;
        if (!zcq_mp_read (&reader, &value))
            return -1;
        if (value.type == ZCQ_TYPE_ARRAY || value.type == ZCQ_TYPE_MAP) {
            reader.cursor = value_at;
            if (!zcq_mp_skip (&reader, 1))
                return -1;
        }
        size_t value_len = (size_t) (reader.cursor - value_at);
        s_cell_t *cell = s_cell_push (self, &count, id, S_RAW);
        if (!cell)
            return -1;
        if (id == S_NO_NAME) {
            //  a key that is not an interned name: the pair as it is, or
            //  with a string key in its shortest form
            bool ok;
            if (!exact && name.type == ZCQ_TYPE_STR) {
                zcq_writer_reset (self->value);
                zcq_writer_strn (self->value, (const char *) name.bytes, name.len);
                zcq_writer_raw (self->value, value_at, value_len);
                ok = zcq_writer_ok (self->value)
                  && s_cell_store (self, cell, zcq_writer_data (self->value),
                                   zcq_writer_size (self->value));
            }
            else
                ok = s_cell_store (self, cell, key_at, (size_t) (reader.cursor - key_at));
            cell->kind = S_PAIR;
            if (!ok)
                return -1;
            continue;
        }
        //  a value as a scalar when it encodes back the same (or need not)
        size_t shortest = 0;
        switch (value.type) {
            case ZCQ_TYPE_NIL:
                cell->kind = S_NIL;
                shortest = 1;
                break;
            case ZCQ_TYPE_BOOL:
                cell->kind = S_BOOL;
                cell->as.b = value.as.b;
                shortest = 1;
                break;
            case ZCQ_TYPE_INT:
                if (value.big)
                    break;
                shortest = s_put_int (canonical, value.as.i);
                if (exact && (shortest != value_len || memcmp (canonical, value_at, shortest) != 0))
                    break;
                cell->kind = S_INT;
                cell->as.i = value.as.i;
                break;
            case ZCQ_TYPE_FLOAT:
                if (value.single)
                    break;
                cell->kind = S_FLOAT;
                cell->as.f = value.as.f;
                shortest = value_len;
                break;
            case ZCQ_TYPE_STR:
                shortest = s_put_str_header (canonical, value.len) + value.len;
                if (exact && shortest != value_len)
                    break;
                if (value.len == key_len && memcmp (value.bytes, key, key_len) == 0) {
                    cell->kind = S_KEY;
                    break;
                }
                cell->kind = S_STR;
                if (!s_cell_store (self, cell, value.bytes, value.len))
                    return -1;
                break;
            default: break;
        }
        if (cell->kind == S_RAW && !s_cell_store (self, cell, value_at, value_len))
            return -1;
    }
    if (reader.cursor != reader.end)
        return -1;
    return (long) count;
}

//  ---- Index values (DESIGN 2, 3) ---------------------------------------------

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

//  One encoded value into writer in its shortest form.
static bool
s_shortest_value (zcq_viewtable_t *self, const uint8_t *raw, size_t raw_len, zcq_writer_t *writer)
{
    if (s_shortest (raw, raw_len)) {
        zcq_writer_raw (writer, raw, raw_len);
        return zcq_writer_ok (writer);
    }
    if (zcq_doc_decode_trusted (self->doc, raw, raw_len) != ZCQ_OK)
        return false;
    zcq_writer_value (writer, zcq_doc_root (self->doc));
    return zcq_writer_ok (writer);
}

//  A row's value of an indexed field, encoded in its shortest form into
//  writer; false when the row has no such field (or no row). The value
//  must pass the codec's content rules, as zcq_msgpack_peek requires.
static bool
s_index_value (zcq_viewtable_t *self, const s_node_t *node, const s_index_t *index,
               zcq_writer_t *writer)
{
    zcq_writer_reset (writer);
    if (!node)
        return false;
    if (!node->typed) {
        const void *raw;
        size_t raw_len;
        return zcq_msgpack_peek (node->payload, node->row_len, index->field, &raw, &raw_len)
            && s_shortest_value (self, raw, raw_len, writer);
    }
    const s_row_t *row = node->payload;
    const s_cell_t *cell = s_cell_find (row, index->name);
    if (!cell)
        return false;
    if (cell->kind == S_RAW) {
        const uint8_t *raw = s_cell_bytes (row, cell);
        return zcq_msgpack_check (raw, cell->len, NULL, NULL) == ZCQ_OK
            && s_shortest_value (self, raw, cell->len, writer);
    }
    uint8_t local[64];
    size_t room = s_cell_room (node, cell);
    uint8_t *out = room <= sizeof local ? local : malloc (room);
    if (!out)
        return false;
    size_t used = s_put_cell_value (out, node, row, cell);
    bool valid = (cell->kind != S_STR && cell->kind != S_KEY)
              || zcq_msgpack_check (out, used, NULL, NULL) == ZCQ_OK;
    if (valid)
        zcq_writer_raw (writer, out, used);
    if (out != local)
        free (out);
    return valid && zcq_writer_ok (writer);
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
    s_node_t *node = s_skiplist_remove (&index->list, self->composite, size, &self->heap);
    if (node) {
        s_node_free (&self->heap, node);
        s_count_drop (self, index, value, value_len);
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
    s_node_t *node = s_skiplist_insert (&index->list, self->composite, size, 0, &self->heap);
    if (!node || !s_count_add (self, index, value, value_len, 1))
        return ZCQ_NOMEM;
    node->payload = row_node;
    return ZCQ_OK;
}

//  Whether index `position` is among the touched ones (a bit each; the
//  64th and later always are).
static inline bool
s_touched (uint64_t touched, size_t position)
{
    return position >= 63 || (touched >> position & 1);
}

#define S_ALL_INDEXES UINT64_MAX

//  Before a row changes: its values of the touched built indexes.
static void
s_index_before (zcq_viewtable_t *self, const s_node_t *node, uint64_t touched)
{
    for (size_t position = 0; position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        if (index->built && s_touched (touched, position))
            index->had = s_index_value (self, node, index, index->was);
    }
}

//  After it changed (node NULL: it went): move its entries whose value
//  changed (DESIGN 2, 3).
static zcq_err_t
s_index_after (zcq_viewtable_t *self, s_node_t *node, const char *key, size_t key_len,
               uint64_t touched)
{
    zcq_err_t err = ZCQ_OK;
    for (size_t position = 0; position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        if (!index->built || !s_touched (touched, position))
            continue;
        bool has = s_index_value (self, node, index, self->value);
        size_t was_len = zcq_writer_size (index->was), now_len = zcq_writer_size (self->value);
        if (index->had && has && was_len == now_len
            && memcmp (zcq_writer_data (index->was), zcq_writer_data (self->value), now_len) == 0)
            continue;
        if (index->had && err == ZCQ_OK)
            err = s_index_remove (self, index, zcq_writer_data (index->was), was_len, key, key_len);
        if (has && err == ZCQ_OK)
            err = s_index_add (self, index, zcq_writer_data (self->value), now_len, key, key_len,
                               node);
    }
    return err;
}

//  ---- Building an index in one pass (DESIGN 5) ------------------------------

typedef struct {
    uint32_t at; //  the value's bytes in the values buffer
    uint32_t len;
    uint64_t hash;
    size_t count;
    size_t next; //  where its next row goes
} s_group_t;

typedef struct {
    s_group_t *groups;
    size_t count;
    size_t capacity;
    uint32_t *slots; //  group ids by value hash, S_NO_GROUP empty
    size_t slot_count;
    s_buffer_t values;
} s_grouping_t;

static void
s_grouping_free (s_grouping_t *grouping)
{
    free (grouping->groups);
    free (grouping->slots);
    free (grouping->values.bytes);
}

//  The group of a value, added when new; S_NO_GROUP when out of memory.
static uint32_t
s_group_of (s_grouping_t *grouping, const void *value, size_t len)
{
    if ((grouping->count + 1) * 2 > grouping->slot_count) {
        size_t slot_count = grouping->slot_count ? grouping->slot_count * 2 : 256;
        uint32_t *slots = malloc (slot_count * sizeof (uint32_t));
        if (!slots)
            return S_NO_GROUP;
        memset (slots, 0xff, slot_count * sizeof (uint32_t));
        for (size_t group = 0; group < grouping->count; group++) {
            size_t slot = (size_t) grouping->groups[group].hash & (slot_count - 1);
            while (slots[slot] != S_NO_GROUP)
                slot = (slot + 1) & (slot_count - 1);
            slots[slot] = (uint32_t) group;
        }
        free (grouping->slots);
        grouping->slots = slots;
        grouping->slot_count = slot_count;
    }
    uint64_t hash = zcq_hash (value, len);
    size_t mask = grouping->slot_count - 1;
    size_t slot = (size_t) hash & mask;
    while (grouping->slots[slot] != S_NO_GROUP) {
        s_group_t *group = &grouping->groups[grouping->slots[slot]];
        if (group->hash == hash && group->len == len
            && memcmp (grouping->values.bytes + group->at, value, len) == 0)
            return grouping->slots[slot];
        slot = (slot + 1) & mask;
    }
    if (grouping->count == grouping->capacity) {
        size_t capacity = grouping->capacity ? grouping->capacity * 2 : 64;
        s_group_t *groups = realloc (grouping->groups, capacity * sizeof (s_group_t));
        if (!groups)
            return S_NO_GROUP;
        grouping->groups = groups;
        grouping->capacity = capacity;
    }
    if (len > UINT32_MAX || grouping->values.size + len > UINT32_MAX
        || !s_buffer_reserve (&grouping->values, len))
        return S_NO_GROUP;
    uint32_t id = (uint32_t) grouping->count++;
    grouping->groups[id] = (s_group_t) { .at = (uint32_t) grouping->values.size,
                                         .len = (uint32_t) len,
                                         .hash = hash };
    memcpy (grouping->values.bytes + grouping->values.size, value, len);
    grouping->values.size += len;
    grouping->slots[slot] = id;
    return id;
}

//  Composite key order of two groups' values: by length, then bytes.
static int
s_group_compare (const void *left_p, const void *right_p, void *arg)
{
    const s_grouping_t *grouping = arg;
    const s_group_t *left = &grouping->groups[*(const uint32_t *) left_p];
    const s_group_t *right = &grouping->groups[*(const uint32_t *) right_p];
    if (left->len != right->len)
        return left->len < right->len ? -1 : 1;
    return memcmp (grouping->values.bytes + left->at, grouping->values.bytes + right->at,
                   left->len);
}

//  Build an empty index from rows (in key order): every row's value, the
//  rows grouped by value keeping key order, the groups in value order,
//  each entry appended. On failure the index is left empty and unbuilt.
static zcq_err_t
s_index_build (zcq_viewtable_t *self, s_index_t *index, s_node_t *const *rows, size_t count)
{
    s_grouping_t grouping = { 0 };
    uint32_t *group_of = malloc ((count ? count : 1) * sizeof (uint32_t));
    uint32_t *order = NULL;
    s_node_t **placed = NULL;
    zcq_err_t err = group_of ? ZCQ_OK : ZCQ_NOMEM;
    size_t having = 0;
    for (size_t row = 0; err == ZCQ_OK && row < count; row++) {
        //  rows lie in memory in no useful order: fetch ahead
        if (row + 16 < count)
            __builtin_prefetch (rows[row + 16]);
        if (row + 8 < count)
            __builtin_prefetch (rows[row + 8]->payload);
        group_of[row] = S_NO_GROUP;
        if (!s_index_value (self, rows[row], index, self->value))
            continue;
        group_of[row]
            = s_group_of (&grouping, zcq_writer_data (self->value), zcq_writer_size (self->value));
        if (group_of[row] == S_NO_GROUP)
            err = ZCQ_NOMEM;
        else {
            grouping.groups[group_of[row]].count++;
            having++;
        }
    }
    if (err == ZCQ_OK) {
        order = malloc ((grouping.count ? grouping.count : 1) * sizeof (uint32_t));
        placed = malloc ((having ? having : 1) * sizeof (s_node_t *));
        if (!order || !placed)
            err = ZCQ_NOMEM;
    }
    if (err == ZCQ_OK) {
        for (size_t group = 0; group < grouping.count; group++)
            order[group] = (uint32_t) group;
        qsort_r (order, grouping.count, sizeof (uint32_t), s_group_compare, &grouping);
        size_t next = 0;
        for (size_t rank = 0; rank < grouping.count; rank++) {
            s_group_t *group = &grouping.groups[order[rank]];
            group->next = next;
            next += group->count;
        }
        for (size_t row = 0; row < count; row++)
            if (group_of[row] != S_NO_GROUP)
                placed[grouping.groups[group_of[row]].next++] = rows[row];
    }
    size_t entry = 0;
    for (size_t rank = 0; err == ZCQ_OK && rank < grouping.count; rank++) {
        const s_group_t *group = &grouping.groups[order[rank]];
        const uint8_t *value = grouping.values.bytes + group->at;
        if (!s_count_add (self, index, (const char *) value, group->len, group->count))
            err = ZCQ_NOMEM;
        for (size_t member = 0; err == ZCQ_OK && member < group->count; member++, entry++) {
            if (entry + 8 < having)
                __builtin_prefetch (placed[entry + 8]);
            s_node_t *row = placed[entry];
            size_t size = s_composite (self, value, group->len, s_key (row), row->key_len);
            bool in_order;
            s_node_t *node = size ? s_skiplist_append (&index->list, self->composite, size,
                                                       &self->heap, &in_order)
                                  : NULL;
            if (node)
                node->payload = row;
            else
                err = size && !in_order ? ZCQ_INVALID : ZCQ_NOMEM;
        }
    }
    free (group_of);
    free (order);
    free (placed);
    s_grouping_free (&grouping);
    if (err != ZCQ_OK)
        s_index_clear (self, index);
    else
        index->built = true;
    return err;
}

//  --------------------------------------------------------------------------
//  Rows in bulk (DESIGN 5)

//  8 bytes of key from depth, big-endian, zeros past its end.
static inline uint64_t
s_prefix (const s_node_t *node, size_t depth)
{
    const uint8_t *key = (const uint8_t *) s_key (node);
    if (node->key_len >= depth + 8)
        return zcq_get_be64 (key + depth);
    uint64_t prefix = 0;
    for (size_t index = depth; index < depth + 8; index++)
        prefix = prefix << 8 | (index < node->key_len ? key[index] : 0);
    return prefix;
}

static int
s_pending_compare (const void *left_p, const void *right_p)
{
    const s_pending_t *left = left_p, *right = right_p;
    if (left->prefix != right->prefix)
        return left->prefix < right->prefix ? -1 : 1;
    return s_compare (s_key (left->node), left->node->key_len, s_key (right->node),
                      right->node->key_len);
}

static void
s_insertion_sort (s_pending_t *items, size_t count)
{
    for (size_t index = 1; index < count; index++) {
        s_pending_t item = items[index];
        size_t place = index;
        while (place > 0 && s_pending_compare (&item, &items[place - 1]) < 0) {
            items[place] = items[place - 1];
            place--;
        }
        items[place] = item;
    }
}

#define S_RADIX_DEPTH_MAX 64 //  key bytes the radix sort looks at; then qsort

//  Sort items sharing their first `depth` key bytes (and the prefix bytes
//  above `byte`) by key: most significant byte first, into 256 buckets.
static void
s_radix_sort (s_pending_t *items, s_pending_t *scratch, size_t count, size_t depth, int byte)
{
    while (true) {
        if (count < 32) {
            s_insertion_sort (items, count);
            return;
        }
        if (byte == 8) {
            //  the prefix is used up: on to the next 8 bytes of the keys,
            //  unless every key ended (they then differ in length only)
            bool longer = false;
            for (size_t index = 0; index < count && !longer; index++)
                longer = items[index].node->key_len > depth + 8;
            if (!longer || depth + 8 >= S_RADIX_DEPTH_MAX) {
                qsort (items, count, sizeof (s_pending_t), s_pending_compare);
                return;
            }
            depth += 8;
            for (size_t index = 0; index < count; index++) {
                if (index + 8 < count)
                    __builtin_prefetch (items[index + 8].node);
                items[index].prefix = s_prefix (items[index].node, depth);
            }
            byte = 0;
        }
        int shift = 56 - 8 * byte;
        size_t counts[256] = { 0 };
        for (size_t index = 0; index < count; index++)
            counts[(items[index].prefix >> shift) & 0xff]++;
        if (counts[(items[0].prefix >> shift) & 0xff] == count) {
            byte++; //  one bucket: nothing to move at this byte
            continue;
        }
        size_t starts[256], start = 0;
        for (int bucket = 0; bucket < 256; bucket++) {
            starts[bucket] = start;
            start += counts[bucket];
        }
        for (size_t index = 0; index < count; index++)
            scratch[starts[(items[index].prefix >> shift) & 0xff]++] = items[index];
        memcpy (items, scratch, count * sizeof (s_pending_t));
        start = 0;
        for (int bucket = 0; bucket < 256; bucket++) {
            if (counts[bucket] > 1)
                s_radix_sort (items + start, scratch + start, counts[bucket], depth, byte + 1);
            start += counts[bucket];
        }
        return;
    }
}

//  Room for one more pending row; false when out of memory.
static bool
s_pending_reserve (zcq_viewtable_t *self)
{
    if (self->pending_count < self->pending_capacity)
        return true;
    size_t capacity = self->pending_capacity ? self->pending_capacity * 2 : 1024;
    s_pending_t *pending = realloc (self->pending, capacity * sizeof (s_pending_t));
    if (!pending)
        return false;
    self->pending = pending;
    self->pending_capacity = capacity;
    return true;
}

//  Link the pending rows into the skip list in key order, and build every
//  index not built yet (DESIGN 5).
static zcq_err_t
s_settle (zcq_viewtable_t *self)
{
    s_node_t **rows = NULL;
    size_t count = 0;
    if (self->bulk) {
        count = self->pending_count;
        s_pending_t *scratch = malloc ((count ? count : 1) * sizeof (s_pending_t));
        if (!scratch)
            return ZCQ_NOMEM;
        for (size_t index = 0; index < count; index++) {
            if (index + 8 < count)
                __builtin_prefetch (self->pending[index + 8].node);
            self->pending[index].prefix = s_prefix (self->pending[index].node, 0);
        }
        s_radix_sort (self->pending, scratch, count, 0, 0);
        for (size_t index = 0; index < count; index++) {
            if (index + 8 < count)
                __builtin_prefetch (self->pending[index + 8].node);
            s_skiplist_link_last (&self->rows, self->pending[index].node);
        }
        //  the scratch becomes the rows in key order, for the indexes
        rows = (s_node_t **) scratch;
        for (size_t index = 0; index < count; index++)
            rows[index] = self->pending[index].node;
        free (self->pending);
        self->pending = NULL;
        self->pending_count = self->pending_capacity = 0;
        self->bulk = false;
    }
    zcq_err_t err = ZCQ_OK;
    for (size_t position = 0; err == ZCQ_OK && position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        if (index->built)
            continue;
        if (!rows) {
            //  rows linked before (an index that could not be built then)
            rows = malloc ((self->rows.count ? self->rows.count : 1) * sizeof (s_node_t *));
            if (!rows)
                return ZCQ_NOMEM;
            for (s_node_t *node = self->rows.head->forward[0]; node; node = node->forward[0])
                rows[count++] = node;
        }
        err = s_index_build (self, index, rows, count);
    }
    free (rows);
    return err;
}

//  Whether the ordered structures are whole (DESIGN 5).
static bool
s_ordered (const zcq_viewtable_t *self)
{
    if (self->bulk)
        return false;
    for (size_t position = 0; position < self->index_count; position++)
        if (!self->indexes[position].built)
            return false;
    return true;
}

zcq_err_t
zcq_viewtable_settle (const zcq_viewtable_t *table)
{
    //  building the ordered structures changes no row: reads may do it
    return s_ordered (table) ? ZCQ_OK : s_settle ((zcq_viewtable_t *) table);
}

//  --------------------------------------------------------------------------

zcq_viewtable_t *
zcq_viewtable_new (const char *const *indexes)
{
    zcq_viewtable_t *self = calloc (1, sizeof (zcq_viewtable_t));
    if (!self)
        return NULL;
    bool ok = s_skiplist_init (&self->rows, (uint64_t) (uintptr_t) self);
    self->bulk = true;
    self->slot_count = 1024;
    self->slots = calloc (self->slot_count, sizeof (uint64_t));
    self->heap.memory = self->slot_count * sizeof (uint64_t);
    self->name_capacity = 16;
    self->names = malloc (self->name_capacity * sizeof (s_name_t));
    self->name_slot_count = S_NAME_SLOTS;
    self->name_slots = malloc (S_NAME_SLOTS * sizeof (uint16_t));
    self->seen = calloc (65536 / 64, sizeof (uint64_t));
    self->doc = zcq_doc_new ();
    self->value = zcq_writer_new ();
    ok = ok && self->slots && self->names && self->name_slots && self->seen && self->doc
      && self->value && s_buffer_reserve (&self->name_bytes, S_NAME_BYTES);
    if (ok) {
        memset (self->name_slots, 0xff, S_NAME_SLOTS * sizeof (uint16_t));
        self->heap.memory += self->name_capacity * sizeof (s_name_t)
                           + S_NAME_SLOTS * sizeof (uint16_t) + self->name_bytes.capacity;
    }
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
            entry->was = zcq_writer_new ();
            self->heap.memory += entry->count_slots * sizeof (s_count_t);
            ok = entry->field && entry->counts && entry->was
              && s_skiplist_init (&entry->list, (uint64_t) (uintptr_t) entry);
            if (ok)
                entry->name = s_name_id (self, entry->field, strlen (entry->field), true);
            ok = ok && entry->name != S_NO_NAME;
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
    //  every row node is in the hash table, linked or pending; the pieces
    //  go with their blocks, what was had from malloc one by one
    for (size_t slot = 0; self->slots && slot < self->slot_count; slot++)
        if (self->slots[slot]) {
            s_node_t *node = s_slot_node (self->slots[slot]);
            s_payload_free (node);
            if (s_node_size (node) > S_PIECE_MAX)
                free (node);
        }
    free (self->rows.head);
    for (size_t index = 0; index < self->index_count; index++) {
        s_index_t *entry = &self->indexes[index];
        if (entry->list.head) {
            for (s_node_t *node = entry->list.head->forward[0]; node;) {
                s_node_t *next = node->forward[0];
                if (s_node_size (node) > S_PIECE_MAX)
                    free (node);
                node = next;
            }
            free (entry->list.head);
        }
        for (size_t slot = 0; entry->counts && slot < entry->count_slots; slot++)
            free (entry->counts[slot].value);
        free (entry->counts);
        free (entry->field);
        zcq_writer_destroy (&entry->was);
    }
    free (self->indexes);
    free (self->slots);
    free (self->names);
    free (self->name_bytes.bytes);
    free (self->name_slots);
    free (self->pending);
    zcq_doc_destroy (&self->doc);
    zcq_writer_destroy (&self->value);
    free (self->composite);
    free (self->cells);
    free (self->area.bytes);
    free (self->encoded.bytes);
    free (self->change_names);
    free (self->seen);
    free (self->loaded);
    s_heap_free (&self->heap);
    free (self);
    *self_p = NULL;
}

//  A new row node for key (absent: *slot is where it would go), in the
//  skip list or pending (DESIGN 5), and in the hash table; NULL when out
//  of memory. *slot is the node's slot then.
static s_node_t *
s_row_insert (zcq_viewtable_t *self, const char *key, size_t key_len, uint64_t hash, size_t *slot,
              size_t record)
{
    size_t slot_count = self->slot_count;
    if (!s_slots_reserve (self) || (self->bulk && !s_pending_reserve (self)))
        return NULL;
    if (self->slot_count != slot_count)
        *slot = s_slot_of (self, key, key_len, hash); //  the table grew
    s_node_t *node;
    if (self->bulk) {
        node = s_node_new (&self->rows, key, key_len, record, &self->heap);
        if (!node)
            return NULL;
        node->mark = (uint32_t) self->pending_count;
        self->pending[self->pending_count++] = (s_pending_t) { 0, node };
    }
    else if (!(node = s_skiplist_insert (&self->rows, key, key_len, record, &self->heap)))
        return NULL;
    self->slots[*slot] = s_slot_make (node, hash);
    self->count++;
    return node;
}

//  Take a row node out of the table and free it with its row.
static void
s_row_remove (zcq_viewtable_t *self, s_node_t *node, size_t slot)
{
    s_slots_remove (self, slot);
    if (self->bulk) {
        s_pending_t last = self->pending[--self->pending_count];
        self->pending[node->mark] = last;
        last.node->mark = node->mark;
        self->heap.memory -= s_node_size (node);
    }
    else
        s_skiplist_remove (&self->rows, s_key (node), node->key_len, &self->heap);
    self->count--;
    self->heap.memory -= s_row_memory (node);
    s_payload_free (node);
    s_node_free (&self->heap, node);
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
    //  a record when it gives the bytes back exactly, else the bytes
    long cells = s_row_parse (self, row, row_len, key, key_len, true);
    void *copy = NULL;
    if (cells < 0 && !(node && !node->typed && node->row_len == row_len && row_len)) {
        copy = malloc (row_len ? row_len : 1);
        if (!copy)
            return ZCQ_NOMEM;
        memcpy (copy, row, row_len);
    }
    bool created = !node;
    size_t record = cells >= 0 ? s_row_size ((size_t) cells, self->area.size) : 0;
    if (created && !(node = s_row_insert (self, key, key_len, hash, &slot, record))) {
        free (copy);
        return ZCQ_NOMEM;
    }
    s_index_before (self, created ? NULL : node, S_ALL_INDEXES);
    if (cells >= 0) {
        if (!s_row_install (self, node, (size_t) cells)) {
            if (created)
                s_row_remove (self, node, slot);
            return ZCQ_NOMEM;
        }
    }
    else if (!copy)
        memcpy (node->payload, row, row_len); //  the same size: in place
    else {
        if (node->payload) {
            self->heap.memory -= s_row_memory (node);
            s_payload_free (node);
        }
        node->payload = copy;
        node->typed = false;
        node->row_len = (uint32_t) row_len;
        self->heap.memory += row_len;
    }
    return s_index_after (self, node, key, key_len, S_ALL_INDEXES);
}

bool
zcq_viewtable_reserve (zcq_viewtable_t *self, size_t rows)
{
    while (rows * 4 > self->slot_count * 3)
        if (!s_slots_grow (self))
            return false;
    return true;
}

bool
zcq_viewtable_delete (zcq_viewtable_t *self, const char *key, size_t key_len)
{
    size_t slot = s_slot_of (self, key, key_len, zcq_hash (key, key_len));
    s_node_t *node = s_slot_node (self->slots[slot]);
    if (!node)
        return false;
    s_index_before (self, node, S_ALL_INDEXES);
    s_index_after (self, NULL, key, key_len, S_ALL_INDEXES);
    s_row_remove (self, node, slot);
    return true;
}

void
zcq_viewtable_prefetch (const zcq_viewtable_t *self, const char *key, size_t key_len)
{
    __builtin_prefetch (&self->slots[zcq_hash (key, key_len) & (self->slot_count - 1)]);
}

const void *
zcq_viewtable_get (const zcq_viewtable_t *self, const char *key, size_t key_len, size_t *row_len)
{
    s_node_t *node
        = s_slot_node (self->slots[s_slot_of (self, key, key_len, zcq_hash (key, key_len))]);
    if (!node)
        return NULL;
    //  encoding a record on demand keeps its bytes, not its value
    return s_row_bytes ((zcq_viewtable_t *) self, node, row_len);
}

size_t
zcq_viewtable_count (const zcq_viewtable_t *self)
{
    return self->count;
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
    if (!index || zcq_viewtable_settle (self) != ZCQ_OK)
        return 0;
    s_count_t *entry = s_count_slot (index, value, value_len, zcq_hash (value, value_len));
    return entry->value ? entry->count : 0;
}

//  Give a row to a page's callback; true when the page stops (the callback
//  said so, or its bytes could not be had).
static bool
s_give (const zcq_viewtable_t *self, s_node_t *node, zcq_row_fn *fn, void *arg)
{
    size_t len;
    const void *bytes = s_row_bytes ((zcq_viewtable_t *) self, node, &len);
    return !bytes || fn (arg, s_key (node), node->key_len, bytes, len);
}

size_t
zcq_viewtable_list (const zcq_viewtable_t *self, const char *after, size_t after_len, size_t limit,
                    zcq_row_fn *fn, void *arg, bool *more)
{
    if (zcq_viewtable_settle (self) != ZCQ_OK) {
        if (more)
            *more = false;
        return 0;
    }
    s_node_t *node = s_skiplist_after (&self->rows, after, after_len);
    size_t given = 0;
    while (node && given < limit) {
        given++;
        s_node_t *row = node;
        node = node->forward[0];
        if (s_give (self, row, fn, arg))
            break;
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
    if (!index || zcq_viewtable_settle (self) != ZCQ_OK)
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
        if (s_give (self, row, fn, arg))
            break;
    }
    if (more)
        *more = node && s_has_value (node, value, value_len);
    return given;
}

size_t
zcq_viewtable_memory (const zcq_viewtable_t *self)
{
    return self->heap.memory;
}

//  --------------------------------------------------------------------------
//  Merging a handler's changes (DESIGN 4)

static inline bool
s_is_key (const char *name, size_t len)
{
    return len == 3 && memcmp (name, "key", 3) == 0;
}

//  The change for a cell's name, or NULL.
static const zcq_change_t *
s_change_for (const zcq_viewtable_t *self, const s_row_t *row, const s_cell_t *cell,
              const zcq_change_t *changes, size_t count, const char **name, size_t *name_len)
{
    if (cell->name != S_NO_NAME) {
        *name = s_name_text (self, cell->name);
        *name_len = self->names[cell->name].len;
        for (size_t index = 0; index < count; index++)
            if (self->change_names[index] == cell->name)
                return &changes[index];
        return NULL;
    }
    const uint8_t *pair_name;
    if (!s_pair_name (row, cell, &pair_name, name_len))
        return NULL;
    *name = (const char *) pair_name;
    for (size_t index = 0; index < count; index++)
        if (changes[index].name_len == *name_len
            && memcmp (changes[index].name, pair_name, *name_len) == 0)
            return &changes[index];
    return NULL;
}

//  Whether a row has a field of this name (by id, or a named pair).
static bool
s_row_has (const zcq_viewtable_t *self, const s_row_t *row, uint16_t name, const char *text,
           size_t len)
{
    if (s_cell_find (row, name))
        return true;
    if (!(row->flags & S_ROW_SLOW))
        return false;
    for (uint16_t index = 0; index < row->count; index++) {
        const uint8_t *pair_name;
        size_t pair_len;
        if (row->cells[index].name == S_NO_NAME
            && s_pair_name (row, &row->cells[index], &pair_name, &pair_len) && pair_len == len
            && memcmp (pair_name, text, len) == 0)
            return true;
    }
    return false;
}

//  A merged value: the change applied to the row's value (NULL: none).
static zcq_err_t
s_merged (const zcq_change_t *change, const s_row_t *row, const s_cell_t *cell, zcq_scalar_t *value)
{
    if (change->op == ZCQ_CHANGE_OVERFLOW)
        return ZCQ_INVALID;
    if (change->op == ZCQ_CHANGE_SET) {
        *value = change->value;
        return ZCQ_OK;
    }
    int64_t start = 0;
    if (cell && !s_cell_int (row, cell, &start))
        start = 0;
    *value = (zcq_scalar_t) { .kind = ZCQ_SCALAR_INT };
    return __builtin_add_overflow (start, change->delta, &value->as.i) ? ZCQ_INVALID : ZCQ_OK;
}

//  Push a cell for a merged value under name (an id, or a pair).
static bool
s_push_merged (zcq_viewtable_t *self, size_t *count, uint16_t name, const char *text, size_t len,
               const zcq_scalar_t *value)
{
    s_cell_t *cell = s_cell_push (self, count, name, S_NIL);
    if (!cell)
        return false;
    return name == S_NO_NAME ? s_cell_pair (self, cell, text, len, value)
                             : s_cell_scalar (self, cell, value);
}

//  The changed record into the scratch: the row's fields changed, dropped
//  or kept in their order, then the fields it did not have (row NULL: a
//  new row, which starts with its key). The count of cells, or an error.
static zcq_err_t
s_merge_cells (zcq_viewtable_t *self, const s_row_t *row, const zcq_change_t *changes,
               size_t change_count, size_t *count)
{
    *count = 0;
    self->area.size = 0;
    if (!row) {
        uint16_t key_name = s_name_id (self, "key", 3, true);
        s_cell_t *cell = s_cell_push (self, count, key_name, S_KEY);
        if (!cell || key_name == S_NO_NAME)
            return ZCQ_NOMEM;
    }
    for (uint16_t index = 0; row && index < row->count; index++) {
        const s_cell_t *cell = &row->cells[index];
        const char *name = NULL;
        size_t name_len = 0;
        const zcq_change_t *change
            = s_change_for (self, row, cell, changes, change_count, &name, &name_len);
        if (change && change->op == ZCQ_CHANGE_UNSET)
            continue;
        if (!change || s_is_key (name, name_len)) {
            if (!s_cell_copy (self, count, row, cell))
                return ZCQ_NOMEM;
            continue;
        }
        zcq_scalar_t value;
        ZCQ_TRY (s_merged (change, row, cell, &value));
        //  a named pair stays a pair: its name is not interned
        if (!s_push_merged (self, count, cell->name, name, name_len, &value))
            return ZCQ_NOMEM;
    }
    for (size_t index = 0; index < change_count; index++) {
        const zcq_change_t *change = &changes[index];
        //  (names of 256 bytes and more are not added: as before records)
        if (change->op == ZCQ_CHANGE_UNSET || s_is_key (change->name, change->name_len)
            || change->name_len >= 256
            || (row
                && s_row_has (self, row, self->change_names[index], change->name,
                              change->name_len)))
            continue;
        zcq_scalar_t value;
        ZCQ_TRY (s_merged (change, NULL, NULL, &value));
        if (!s_push_merged (self, count, self->change_names[index], change->name, change->name_len,
                            &value))
            return ZCQ_NOMEM;
    }
    return ZCQ_OK;
}

//  The changes made in the row's cells where they are, when that is
//  possible: every changed field is there already and keeps its size.
//  ZCQ_OK when done, ZCQ_NOT_FOUND when the row must be rebuilt, or an
//  error (nothing changed then).
static zcq_err_t
s_merge_in_place (zcq_viewtable_t *self, s_node_t *node, const zcq_change_t *changes,
                  size_t change_count)
{
    s_row_t *row = node->payload;
    if (row->flags & S_ROW_SLOW)
        return ZCQ_NOT_FOUND;
    //  first the plan: every new cell value, checked (DESIGN 4)
    typedef struct {
        s_cell_t *cell;
        zcq_scalar_t value;
    } s_plan_t;
    s_plan_t local[16];
    s_plan_t *plan = change_count <= 16 ? local : malloc (change_count * sizeof (s_plan_t));
    if (!plan)
        return ZCQ_NOMEM;
    size_t planned = 0;
    uint64_t touched = 0;
    zcq_err_t err = ZCQ_OK;
    for (size_t index = 0; err == ZCQ_OK && index < change_count; index++) {
        const zcq_change_t *change = &changes[index];
        s_cell_t *cell = s_cell_find (row, self->change_names[index]);
        if (change->op == ZCQ_CHANGE_UNSET) {
            if (cell)
                err = ZCQ_NOT_FOUND;
            continue;
        }
        if (s_is_key (change->name, change->name_len))
            continue;
        if (!cell) {
            if (change->name_len < 256)
                err = ZCQ_NOT_FOUND;
            continue;
        }
        zcq_scalar_t value;
        err = s_merged (change, row, cell, &value);
        if (err != ZCQ_OK)
            break;
        bool fixed_before = cell->kind <= S_FLOAT, fixed_after = value.kind <= ZCQ_SCALAR_FLOAT;
        bool same_bytes = (cell->kind == S_STR && value.kind == ZCQ_SCALAR_STR)
                       || (cell->kind == S_RAW && value.kind == ZCQ_SCALAR_RAW);
        if (!(fixed_before && fixed_after) && !(same_bytes && cell->len == value.len)) {
            err = ZCQ_NOT_FOUND;
            break;
        }
        plan[planned++] = (s_plan_t) { cell, value };
        for (size_t position = 0; position < self->index_count; position++)
            if (self->indexes[position].name == cell->name)
                touched |= position >= 63 ? S_ALL_INDEXES : 1ULL << position;
    }
    if (err == ZCQ_OK && planned) {
        s_index_before (self, node, touched);
        for (size_t index = 0; index < planned; index++) {
            s_cell_t *cell = plan[index].cell;
            const zcq_scalar_t *value = &plan[index].value;
            if (value->kind == ZCQ_SCALAR_STR || value->kind == ZCQ_SCALAR_RAW) {
                memcpy (s_area (row) + cell->as.at, value->bytes, value->len);
                continue;
            }
            s_cell_scalar (self, cell, value); //  a number, nil or boolean
        }
        s_row_changed (self, row);
        if (touched)
            err = s_index_after (self, node, s_key (node), node->key_len, touched);
    }
    if (plan != local)
        free (plan);
    return err;
}

zcq_err_t
zcq_viewtable_merge (zcq_viewtable_t *self, const char *key, size_t key_len, zcq_fields_t *fields,
                     bool create)
{
    if (key_len > UINT32_MAX)
        return ZCQ_INVALID;
    size_t change_count;
    const zcq_change_t *changes = zcq_fields_changes (fields, &change_count);
    if (!changes && change_count)
        return ZCQ_NOMEM;
    uint64_t hash = zcq_hash (key, key_len);
    size_t slot = s_slot_of (self, key, key_len, hash);
    s_node_t *node = s_slot_node (self->slots[slot]);
    if (!node && !create)
        return ZCQ_NOT_FOUND;
    //  the names of the changes, interned (an unset needs none)
    if (change_count > self->change_capacity) {
        uint16_t *names = realloc (self->change_names, change_count * sizeof (uint16_t));
        if (!names)
            return ZCQ_NOMEM;
        self->change_names = names;
        self->change_capacity = change_count;
    }
    for (size_t index = 0; index < change_count; index++)
        self->change_names[index] = s_name_id (self, changes[index].name, changes[index].name_len,
                                               changes[index].op != ZCQ_CHANGE_UNSET);
    //  a row held as bytes becomes a record (DESIGN 4), once the changes
    //  apply: until then it is read as one apart
    s_row_t *converted = NULL;
    if (node && !node->typed) {
        long cells = s_row_parse (self, node->payload, node->row_len, key, key_len, false);
        if (cells < 0)
            return ZCQ_CORRUPT;
        if (!(converted = s_row_detach (self, (size_t) cells)))
            return ZCQ_NOMEM;
    }
    else if (node) {
        zcq_err_t err = s_merge_in_place (self, node, changes, change_count);
        if (err != ZCQ_NOT_FOUND)
            return err;
    }
    size_t count;
    zcq_err_t err = s_merge_cells (self,
                                   converted ? converted
                                   : node    ? node->payload
                                             : NULL,
                                   changes, change_count, &count);
    free (converted);
    if (err != ZCQ_OK)
        return err;
    bool created = !node;
    if (created
        && !(node
             = s_row_insert (self, key, key_len, hash, &slot, s_row_size (count, self->area.size))))
        return ZCQ_NOMEM;
    s_index_before (self, created ? NULL : node, S_ALL_INDEXES);
    if (!s_row_install (self, node, count)) {
        if (created)
            s_row_remove (self, node, slot);
        return ZCQ_NOMEM;
    }
    return s_index_after (self, node, key, key_len, S_ALL_INDEXES);
}

//  --------------------------------------------------------------------------
//  Snapshots (viewsnap.c): rows go out in key order, numbered 0, 1, ...;
//  each index goes out as the row numbers in its order, so that loading
//  appends every entry instead of searching for its place.

bool
zcq_viewtable_dump (const zcq_viewtable_t *table, zcq_row_fn *fn, void *arg)
{
    zcq_viewtable_t *self = (zcq_viewtable_t *) table;
    if (zcq_viewtable_settle (self) != ZCQ_OK)
        return false;
    for (s_node_t *node = self->rows.head->forward[0]; node; node = node->forward[0]) {
        const void *bytes = node->payload;
        size_t len = node->row_len;
        if (node->typed) {
            s_row_t *row = node->payload;
            if (row->cache) {
                bytes = row->cache;
                len = row->cache_len;
            }
            else {
                //  encoded for the snapshot only: not kept
                self->encoded.size = 0;
                if (!s_buffer_reserve (&self->encoded, s_row_room (self, node)))
                    return false;
                len = s_row_put (self, node, self->encoded.bytes);
                bytes = self->encoded.bytes;
            }
        }
        if (fn (arg, s_key (node), node->key_len, bytes, len))
            break;
    }
    return true;
}

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
    zcq_viewtable_settle (self);
    return self->indexes[index].list.count;
}

void
zcq_viewtable_index_order (const zcq_viewtable_t *self, size_t index, uint8_t *rows)
{
    zcq_viewtable_settle (self);
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

//  A load starts on an empty table: its rows come in key order, straight
//  into the skip list.
static bool
s_load_begin (zcq_viewtable_t *self)
{
    if (self->bulk && self->count)
        return false;
    self->bulk = false;
    return true;
}

zcq_err_t
zcq_viewtable_load_row (zcq_viewtable_t *self, const char *key, size_t key_len, const void *row,
                        size_t row_len)
{
    if (key_len > UINT32_MAX || row_len > UINT32_MAX || self->loaded_count >= UINT32_MAX
        || !s_load_begin (self))
        return ZCQ_INVALID;
    if (self->loaded_count == self->loaded_capacity) {
        size_t capacity = self->loaded_capacity ? self->loaded_capacity * 2 : 1024;
        s_node_t **loaded = realloc (self->loaded, capacity * sizeof (s_node_t *));
        if (!loaded)
            return ZCQ_NOMEM;
        self->loaded = loaded;
        self->loaded_capacity = capacity;
    }
    //  in key order, or the file is damaged
    s_skiplist_tails (&self->rows);
    s_node_t *last = self->rows.tail[0];
    if (last != self->rows.head && s_compare (s_key (last), last->key_len, key, key_len) >= 0)
        return ZCQ_INVALID;
    if (!s_slots_reserve (self))
        return ZCQ_NOMEM;
    //  the row's bytes in the node's block when they fit (DESIGN 6)
    s_node_t *node = s_node_new (&self->rows, key, key_len, row_len ? row_len : 1, &self->heap);
    if (!node)
        return ZCQ_NOMEM;
    if (node->inline_size)
        node->payload = s_inline (node);
    else if (!(node->payload = malloc (row_len ? row_len : 1))) {
        self->heap.memory -= s_node_size (node);
        s_node_free (&self->heap, node);
        return ZCQ_NOMEM;
    }
    else
        self->heap.memory += row_len;
    memcpy (node->payload, row, row_len);
    node->row_len = (uint32_t) row_len;
    s_skiplist_link_last (&self->rows, node);
    uint64_t hash = zcq_hash (key, key_len);
    self->slots[s_slot_of (self, key, key_len, hash)] = s_slot_make (node, hash);
    self->count++;
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
    s_index_t *index = &self->indexes[position];
    if (!s_load_begin (self) || index->built || count > self->loaded_count)
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
        if (!s_index_value (self, row, index, self->value))
            return ZCQ_INVALID;
        size_t size = s_composite (self, zcq_writer_data (self->value),
                                   zcq_writer_size (self->value), s_key (row), row->key_len);
        bool in_order;
        s_node_t *node
            = size ? s_skiplist_append (&index->list, self->composite, size, &self->heap, &in_order)
                   : NULL;
        if (!node)
            return size && !in_order ? ZCQ_INVALID : ZCQ_NOMEM;
        node->payload = row;
        if (!s_count_add (self, index, zcq_writer_data (self->value), zcq_writer_size (self->value),
                          1))
            return ZCQ_NOMEM;
    }
    index->built = true;
    return ZCQ_OK;
}

zcq_err_t
zcq_viewtable_load_done (zcq_viewtable_t *self)
{
    zcq_err_t err = s_load_begin (self) ? ZCQ_OK : ZCQ_INVALID;
    for (size_t position = 0; err == ZCQ_OK && position < self->index_count; position++) {
        s_index_t *index = &self->indexes[position];
        if (!index->built) {
            //  an index the snapshot lacks: built from the rows in one pass
            err = s_index_build (self, index, self->loaded, self->loaded_count);
            continue;
        }
        //  an index that leaves out rows that have the field is damaged
        size_t having = 0;
        for (size_t number = 0; number < self->loaded_count; number++)
            having += s_index_value (self, self->loaded[number], index, self->value);
        if (having != index->list.count)
            err = ZCQ_INVALID;
    }
    free (self->loaded);
    self->loaded = NULL;
    self->loaded_count = self->loaded_capacity = 0;
    return err;
}
