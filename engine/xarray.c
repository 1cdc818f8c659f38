/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xarray.c - the RCU-read radix tree (see xarray.h for the contract).
 *
 * Writers hold xa_lock and publish every slot with a release store; readers
 * hold only the RCU read lock and load slots with acquire loads. Three
 * writer orderings make lock-free reads exact (never an entry that does not
 * cover the index asked for):
 *
 *  1. A multi-index store writes its canonical slot first, then the sibling
 *     slots. A reader that reads a new sibling then reads the canonical slot,
 *     which the release/acquire pair guarantees is already the new entry.
 *  2. A split rewrites every slot but the canonical one first, and the
 *     canonical slot last.
 *  3. A reader that followed a sibling to its canonical slot loads the
 *     sibling slot again; if it changed, or the canonical slot holds anything
 *     internal, the reader restarts from the top (xas_descend()). With (1) and
 *     (2), a sibling slot that still reads the same after an acquire load of
 *     its canonical slot names an entry that covers it.
 *
 * Nodes that leave the tree get XA_RETRY_ENTRY in every slot before their
 * grace period starts, so a reader inside them (or one reloading a slot it
 * walked to earlier, law 1) restarts instead of trusting stale contents.
 */
#include <stdlib.h>
#include <string.h>

#include "xarray.h"

/* ---- Node allocation ---------------------------------------------------- */

#define XA_NODE_ALLOC_SIZE \
	((sizeof(struct xa_node) + 63) & ~(size_t)63)

static long nodes_live;
#ifdef FOLIOFS_TESTING
static long fail_after = -1;
#endif

long xa_nodes_live(void)
{
	return __atomic_load_n(&nodes_live, __ATOMIC_RELAXED);
}

void xa_fail_alloc_after(long n)
{
#ifdef FOLIOFS_TESTING
	__atomic_store_n(&fail_after, n, __ATOMIC_RELAXED);
#else
	(void)n;
#endif
}

static bool alloc_should_fail(void)
{
#ifdef FOLIOFS_TESTING
	long n = __atomic_load_n(&fail_after, __ATOMIC_RELAXED);

	while (n >= 0) {
		if (n == 0)
			return true;
		if (__atomic_compare_exchange_n(&fail_after, &n, n - 1, false,
						__ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			return false;
	}
#endif
	return false;
}

static struct xa_node *xa_node_alloc(void)
{
	struct xa_node *node;

	if (alloc_should_fail())
		return NULL;
	/* Cache-line aligned: readers touch a node's first line and a slot. */
	node = aligned_alloc(64, XA_NODE_ALLOC_SIZE);
	if (!node)
		return NULL;
	__atomic_add_fetch(&nodes_live, 1, __ATOMIC_RELAXED);
	return node;
}

/* A node that was never published needs no grace period. */
static void xa_node_free_now(struct xa_node *node)
{
	free(node);
	__atomic_sub_fetch(&nodes_live, 1, __ATOMIC_RELAXED);
}

static void xa_node_rcu_cb(struct rcu_head *head)
{
	/* Pairs with fs_rcu_read_unlock()'s release under TSan. */
	fs_rcu_tsan_acquire();
	xa_node_free_now(container_of(head, struct xa_node, rcu));
}

static void xa_node_free_rcu(struct xa_node *node)
{
	fs_call_rcu(&node->rcu, xa_node_rcu_cb);
}

/* Take a zeroed node from the cursor's preallocated list. */
static struct xa_node *xas_take_node(struct xa_state *xas, struct xa_node *parent,
				     unsigned int shift, unsigned int offset)
{
	struct xa_node *node = xas->xa_alloc;

	BUG_ON(!node);
	xas->xa_alloc = node->next_free;
	xas->xa_nr_alloc--;
	memset(node, 0, sizeof(*node));
	node->shift = shift;
	node->offset = offset;
	node->parent = parent;
	node->array = xas->xa;
	return node;
}

static void xas_push_node(struct xa_state *xas, struct xa_node *node)
{
	node->next_free = xas->xa_alloc;
	xas->xa_alloc = node;
	xas->xa_nr_alloc++;
}

bool xas_nomem(struct xa_state *xas)
{
	if (xas->xa_error != -ENOMEM)
		return false;
	while (xas->xa_nr_alloc < xas->xa_need) {
		struct xa_node *node = xa_node_alloc();

		if (!node)
			return false;
		xas_push_node(xas, node);
	}
	xas->xa_error = 0;
	xas->xa_node = XAS_RESTART;
	return true;
}

void xas_destroy(struct xa_state *xas)
{
	while (xas->xa_alloc) {
		struct xa_node *node = xas->xa_alloc;

		xas->xa_alloc = node->next_free;
		xa_node_free_now(node);
	}
	xas->xa_nr_alloc = 0;
}

/* ---- Slots, marks, geometry --------------------------------------------- */

static inline void *slot_load(struct xa_node *node, unsigned int offset)
{
	/* Pairs with slot_store() and with the release in xa_head stores. */
	return load_acquire(&node->slots[offset]);
}

static inline void slot_store(struct xa_node *node, unsigned int offset,
			      void *entry)
{
	/* Pairs with slot_load(): everything written before is visible. */
	store_release(&node->slots[offset], entry);
}

static inline void *head_load(struct xarray *xa)
{
	return load_acquire(&xa->xa_head);
}

static inline void head_store(struct xarray *xa, void *entry)
{
	store_release(&xa->xa_head, entry);
}

static inline unsigned int node_offset(unsigned long index,
				       const struct xa_node *node)
{
	return (index >> node->shift) & XA_CHUNK_MASK;
}

/* Highest index a subtree whose root has @shift can hold. */
static inline unsigned long shift_max_index(unsigned int shift)
{
	unsigned int bits = shift + XA_CHUNK_SHIFT;

	return bits >= BITS_PER_LONG ? ULONG_MAX : (1UL << bits) - 1;
}

/* Smallest root shift whose tree can hold @index. */
static unsigned int index_shift(unsigned long index)
{
	unsigned int shift = 0;

	while (shift + XA_CHUNK_SHIFT < BITS_PER_LONG &&
	       (index >> (shift + XA_CHUNK_SHIFT)) != 0)
		shift += XA_CHUNK_SHIFT;
	return shift;
}

/* First index covered by slot @offset of @node, for a walk at @index. */
static inline unsigned long slot_base(const struct xa_node *node,
				      unsigned long index, unsigned int offset)
{
	unsigned long node_mask = shift_max_index(node->shift);

	return (index & ~node_mask) + ((unsigned long)offset << node->shift);
}

static inline unsigned int order_level(unsigned int order)
{
	return order - order % XA_CHUNK_SHIFT;
}

static inline bool node_get_mark(struct xa_node *node, unsigned int offset,
				 xa_mark_t mark)
{
	return READ_ONCE(node->marks[mark][offset / BITS_PER_LONG]) &
	       (1UL << (offset % BITS_PER_LONG));
}

static inline void node_set_mark(struct xa_node *node, unsigned int offset,
				 xa_mark_t mark)
{
	__atomic_fetch_or(&node->marks[mark][offset / BITS_PER_LONG],
			  1UL << (offset % BITS_PER_LONG), __ATOMIC_RELAXED);
}

static inline bool node_clear_mark(struct xa_node *node, unsigned int offset,
				   xa_mark_t mark)
{
	unsigned long bit = 1UL << (offset % BITS_PER_LONG);

	return __atomic_fetch_and(&node->marks[mark][offset / BITS_PER_LONG],
				  ~bit, __ATOMIC_RELAXED) & bit;
}

static bool node_any_mark(struct xa_node *node, xa_mark_t mark)
{
	for (unsigned int i = 0; i < XA_MARK_LONGS; i++)
		if (READ_ONCE(node->marks[mark][i]))
			return true;
	return false;
}

/* First offset >= @offset with @mark set, or XA_CHUNK_SIZE. */
static unsigned int node_next_mark(struct xa_node *node, unsigned int offset,
				   xa_mark_t mark)
{
	while (offset < XA_CHUNK_SIZE) {
		unsigned int word = offset / BITS_PER_LONG;
		unsigned long bits = READ_ONCE(node->marks[mark][word]);

		bits &= ~0UL << (offset % BITS_PER_LONG);
		if (bits) {
			offset = word * BITS_PER_LONG + __builtin_ctzl(bits);
			return offset < XA_CHUNK_SIZE ? offset : XA_CHUNK_SIZE;
		}
		offset = (word + 1) * BITS_PER_LONG;
	}
	return XA_CHUNK_SIZE;
}

static inline void xa_root_set_mark(struct xarray *xa, xa_mark_t mark)
{
	__atomic_fetch_or(&xa->xa_marks, 1U << mark, __ATOMIC_RELAXED);
}

static inline void xa_root_clear_mark(struct xarray *xa, xa_mark_t mark)
{
	__atomic_fetch_and(&xa->xa_marks, ~(1U << mark), __ATOMIC_RELAXED);
}

/* @node now has @mark on some slot: make every ancestor say so. */
static void mark_propagate_set(struct xarray *xa, struct xa_node *node,
			       xa_mark_t mark)
{
	while (node->parent) {
		if (node_get_mark(node->parent, node->offset, mark))
			return;		/* invariant: ancestors above are set */
		node_set_mark(node->parent, node->offset, mark);
		node = node->parent;
	}
	xa_root_set_mark(xa, mark);
}

/* @node may have lost its last @mark: clear ancestors that now have none. */
static void mark_propagate_clear(struct xarray *xa, struct xa_node *node,
				 xa_mark_t mark)
{
	while (node) {
		if (node_any_mark(node, mark))
			return;
		if (!node->parent) {
			xa_root_clear_mark(xa, mark);
			return;
		}
		node_clear_mark(node->parent, node->offset, mark);
		node = node->parent;
	}
}

/* Number of sibling slots after canonical slot @offset. */
static unsigned int node_sibs(struct xa_node *node, unsigned int offset)
{
	void *sib = xa_mk_sibling(offset);
	unsigned int i = offset + 1;

	while (i < XA_CHUNK_SIZE && slot_load(node, i) == sib)
		i++;
	return i - offset - 1;
}

static inline unsigned int ilog2_u(unsigned int v)
{
	return 31 - __builtin_clz(v);
}

/* ---- Locking ------------------------------------------------------------ */

void xa_init(struct xarray *xa)
{
	memset(xa, 0, sizeof(*xa));
	pthread_mutex_init(&xa->xa_lock, NULL);
}

void xa_lock(struct xarray *xa)
{
	pthread_mutex_lock(&xa->xa_lock);
#ifdef FOLIOFS_DEBUG
	xa->xa_owner = pthread_self();
	xa->xa_owned = true;
#endif
}

void xa_unlock(struct xarray *xa)
{
#ifdef FOLIOFS_DEBUG
	xa->xa_owned = false;
#endif
	pthread_mutex_unlock(&xa->xa_lock);
}

bool xa_lock_held(struct xarray *xa)
{
#ifdef FOLIOFS_DEBUG
	/*
	 * Only the holder writes these under the lock; another thread may read
	 * a stale "owned", but never its own id with owned set unless it holds
	 * the lock.
	 */
	return __atomic_load_n(&xa->xa_owned, __ATOMIC_RELAXED) &&
	       pthread_equal(xa->xa_owner, pthread_self());
#else
	(void)xa;
	return true;
#endif
}

#define XA_ASSERT_LOCKED(xa)	BUG_ON(!xa_lock_held(xa))

/* ---- Walking ------------------------------------------------------------ */

/*
 * Read the slot of @node that covers xa_index, resolving a sibling to its
 * canonical slot (writer ordering rule 3 in the file comment). Returns
 * XA_RETRY_ENTRY when the reader must walk again from the top.
 */
/*
 * @shift is @node's shift, passed down by the caller: a child's shift is
 * always its parent's less XA_CHUNK_SHIFT, and not reading it from the
 * child saves a dependent cache miss per level (the slot's line is the only
 * one of the child a lookup then touches).
 */
static inline void *xas_descend(struct xa_state *xas, struct xa_node *node,
				unsigned int shift)
{
	unsigned int offset = (xas->xa_index >> shift) & XA_CHUNK_MASK;
	void *entry = slot_load(node, offset);

	if (unlikely(xa_is_sibling(entry))) {
		unsigned int canon = xa_to_sibling(entry);
		void *head = slot_load(node, canon);

		if (slot_load(node, offset) != entry || xa_is_internal(head))
			return XA_RETRY_ENTRY;
		offset = canon;
		entry = head;
	}
	xas->xa_node = node;
	xas->xa_offset = offset;
	return entry;
}

void *xas_load(struct xa_state *xas)
{
	struct xa_node *node;
	unsigned int shift;
	void *entry;

	xas->xa_span = 0;
restart:
	entry = head_load(xas->xa);
	if (!entry) {
		xas->xa_node = NULL;
		return NULL;
	}
	node = xa_to_node(entry);
	shift = node->shift;
	if (xas->xa_index > shift_max_index(shift)) {
		xas->xa_node = NULL;
		return NULL;
	}
	for (;;) {
		entry = xas_descend(xas, node, shift);
		if (unlikely(xa_is_retry(entry)))
			goto restart;
		if (!xa_is_node(entry))
			return entry;
		node = xa_to_node(entry);
		shift -= XA_CHUNK_SHIFT;
	}
}

void *xas_reload(struct xa_state *xas)
{
	struct xa_node *node = xas->xa_node;
	void *entry;

	if (!xas_on_node(xas))
		return xas_load(xas);
	/* Read the slot for xa_index itself, not the old canonical one. */
	entry = xas_descend(xas, node, node->shift);
	if (xa_is_internal(entry))
		return xas_load(xas);
	return entry;
}

unsigned int xas_get_order(struct xa_state *xas)
{
	struct xa_node *node;

	if (xas->xa_node && !xas_on_node(xas))
		xas_load(xas);
	node = xas->xa_node;
	if (!xas_on_node(xas))
		return 0;
	if (!slot_load(node, xas->xa_offset))
		return 0;
	return node->shift + ilog2_u(node_sibs(node, xas->xa_offset) + 1);
}

/* ---- Freeing subtrees --------------------------------------------------- */

/*
 * Free @node and everything below it after a grace period. Every slot gets
 * the retry entry first, so readers still inside walk again.
 */
static void xa_free_subtree(struct xa_node *node)
{
	for (unsigned int i = 0; i < XA_CHUNK_SIZE; i++) {
		void *entry = node->slots[i];

		if (xa_is_node(entry))
			xa_free_subtree(xa_to_node(entry));
		slot_store(node, i, XA_RETRY_ENTRY);
	}
	xa_node_free_rcu(node);
}

/* Remove empty nodes from @node upwards. */
static void xas_delete_empty(struct xarray *xa, struct xa_node *node)
{
	while (node && node->count == 0) {
		struct xa_node *parent = node->parent;

		if (!parent) {
			head_store(xa, NULL);
			__atomic_store_n(&xa->xa_marks, 0, __ATOMIC_RELAXED);
		} else {
			slot_store(parent, node->offset, NULL);
			parent->count--;
			for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
				if (node_clear_mark(parent, node->offset, m))
					mark_propagate_clear(xa, parent, m);
		}
		xa_free_subtree(node);
		node = parent;
	}
}

/* While the root has one child, in slot 0, make the child the root. */
static void xas_shrink(struct xarray *xa)
{
	for (;;) {
		void *head = xa->xa_head;
		struct xa_node *node, *child;
		void *entry;

		if (!head)
			return;
		node = xa_to_node(head);
		if (node->count != 1)
			return;
		entry = node->slots[0];
		if (!xa_is_node(entry))
			return;
		child = xa_to_node(entry);
		child->parent = NULL;
		child->offset = 0;
		head_store(xa, entry);
		/* Readers still in the old root walk again (they see the child). */
		slot_store(node, 0, XA_RETRY_ENTRY);
		node->count = 0;
		xa_node_free_rcu(node);
	}
}

/* ---- Storing ------------------------------------------------------------ */

/*
 * Nodes a store of level @tshift at xa_index must create: the levels the
 * root must grow by, plus the missing nodes on the path down to @tshift.
 */
static unsigned int xas_nodes_needed(struct xa_state *xas, unsigned int tshift)
{
	unsigned long index = xas->xa_index;
	void *head = xas->xa->xa_head;
	struct xa_node *node;
	unsigned int top, need;

	top = index_shift(index);
	if (tshift > top)
		top = tshift;
	if (!head)
		return (top - tshift) / XA_CHUNK_SHIFT + 1;

	node = xa_to_node(head);
	if (node->shift > top)
		top = node->shift;
	need = (top - node->shift) / XA_CHUNK_SHIFT;
	if (index > shift_max_index(node->shift))
		/* The path leaves slot 0 at the level that first covers index. */
		return need + (index_shift(index) - tshift) / XA_CHUNK_SHIFT;

	while (node->shift > tshift) {
		void *entry = node->slots[node_offset(index, node)];

		if (!entry)
			return need + (node->shift - tshift) / XA_CHUNK_SHIFT;
		if (!xa_is_node(entry))
			break;
		node = xa_to_node(entry);
	}
	return need;
}

/*
 * Grow the root and create the path to the node of level @tshift that holds
 * xa_index. xas_nodes_needed() said how many nodes this takes, and the
 * caller made sure the cursor holds them, so nothing here can fail.
 */
static struct xa_node *xas_create(struct xa_state *xas, unsigned int tshift)
{
	struct xarray *xa = xas->xa;
	unsigned long index = xas->xa_index;
	struct xa_node *node;
	unsigned int top = index_shift(index);

	if (tshift > top)
		top = tshift;
	if (!xa->xa_head) {
		node = xas_take_node(xas, NULL, top, 0);
		head_store(xa, xa_mk_node(node));
	} else {
		node = xa_to_node(xa->xa_head);
		while (node->shift < top) {
			struct xa_node *root;

			root = xas_take_node(xas, NULL, node->shift + XA_CHUNK_SHIFT, 0);
			root->slots[0] = xa_mk_node(node);
			root->count = 1;
			for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
				if (node_any_mark(node, m))
					node_set_mark(root, 0, m);
			node->parent = root;
			node->offset = 0;
			/* Publishes root's slot and marks written above. */
			head_store(xa, xa_mk_node(root));
			node = root;
		}
	}

	while (node->shift > tshift) {
		unsigned int offset = node_offset(index, node);
		void *entry = node->slots[offset];

		if (!entry) {
			struct xa_node *child;

			child = xas_take_node(xas, node,
					      node->shift - XA_CHUNK_SHIFT, offset);
			slot_store(node, offset, xa_mk_node(child));
			node->count++;
			node = child;
		} else {
			BUG_ON(!xa_is_node(entry));
			node = xa_to_node(entry);
		}
	}
	return node;
}

/*
 * Replace slots [@offset, @offset + @sibs] of @node by @entry and its
 * siblings (or by NULL), freeing the subtrees they pointed to.
 */
static void node_replace(struct xa_state *xas, struct xa_node *node,
			  unsigned int offset, unsigned int sibs, void *entry)
{
	struct xa_node *detached[XA_CHUNK_SIZE];
	unsigned int ndetached = 0, i;
	void *old = node->slots[offset];
	bool keep_marks;
	int delta = 0;

	keep_marks = entry && old && !xa_is_internal(old) &&
		     node_sibs(node, offset) == sibs;

	for (i = offset; i <= offset + sibs; i++) {
		void *curr = node->slots[i];

		if (!curr && entry)
			delta++;
		else if (curr && !entry)
			delta--;
		if (xa_is_node(curr))
			detached[ndetached++] = xa_to_node(curr);
	}

	/* Marks go first so that no search sees the new entry marked. */
	if (!keep_marks) {
		for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++) {
			bool cleared = false;

			for (i = offset; i <= offset + sibs; i++)
				cleared |= node_clear_mark(node, i, m);
			if (cleared)
				mark_propagate_clear(xas->xa, node, m);
		}
	}

	if (entry) {
		/* Canonical slot first: writer ordering rule 1. */
		if (node->slots[offset] != entry)
			slot_store(node, offset, entry);
		for (i = offset + 1; i <= offset + sibs; i++)
			if (node->slots[i] != xa_mk_sibling(offset))
				slot_store(node, i, xa_mk_sibling(offset));
	} else {
		for (i = offset + sibs + 1; i-- > offset;)
			if (node->slots[i])
				slot_store(node, i, NULL);
	}
	node->count += delta;

	for (i = 0; i < ndetached; i++)
		xa_free_subtree(detached[i]);
}

void *xas_store(struct xa_state *xas, void *entry)
{
	struct xarray *xa = xas->xa;
	unsigned int order = xas->xa_order;
	unsigned int tshift, sibs, need;
	struct xa_node *node;
	void *curr;

	XA_ASSERT_LOCKED(xa);
	xas->xa_error = 0;
	if (xa_is_internal(entry) || order > XA_MAX_ORDER) {
		xas->xa_error = -EINVAL;
		return NULL;
	}
	if (order)
		xas->xa_index &= ~((1UL << order) - 1);

	/* An entry larger than the range may cover it. */
	curr = xas_load(xas);
	if (curr) {
		unsigned int curr_order = xas_get_order(xas);

		if (curr_order > order) {
			if (entry) {
				xas->xa_error = -EBUSY;
				return NULL;
			}
			/* Erasing at any index removes the whole entry. */
			order = curr_order;
			xas->xa_index &= order < BITS_PER_LONG ?
					 ~((1UL << order) - 1) : 0;
		}
	}
	tshift = order_level(order);
	sibs = (1U << (order - tshift)) - 1;

	if (!entry) {
		if (!xa->xa_head)
			goto out_restart;
		node = xa_to_node(xa->xa_head);
		if (xas->xa_index > shift_max_index(node->shift))
			goto out_restart;
		if (tshift > node->shift) {
			/* The aligned range holds the whole tree. */
			head_store(xa, NULL);
			__atomic_store_n(&xa->xa_marks, 0, __ATOMIC_RELAXED);
			xa_free_subtree(node);
			goto out_restart;
		}
		while (node->shift > tshift) {
			void *next = node->slots[node_offset(xas->xa_index, node)];

			if (!xa_is_node(next))
				goto out_restart;	/* nothing in range */
			node = xa_to_node(next);
		}
		node_replace(xas, node, node_offset(xas->xa_index, node), sibs,
			     NULL);
		xas_delete_empty(xa, node);
		xas_shrink(xa);
		xas->xa_node = XAS_RESTART;
		return curr;
	}

	need = xas_nodes_needed(xas, tshift);
	if (need > xas->xa_nr_alloc) {
		xas->xa_error = -ENOMEM;
		xas->xa_need = need;
		xas->xa_node = XAS_RESTART;
		return NULL;
	}
	node = xas_create(xas, tshift);
	xas->xa_offset = node_offset(xas->xa_index, node);
	node_replace(xas, node, xas->xa_offset, sibs, entry);
	xas->xa_node = node;
	return curr;

out_restart:
	xas->xa_node = XAS_RESTART;
	return curr;
}

/* ---- Marks on the cursor ------------------------------------------------ */

/* Leave the cursor on the entry at xa_index; return its node or NULL. */
static struct xa_node *xas_entry_node(struct xa_state *xas)
{
	struct xa_node *node;

	if (xas->xa_node && !xas_on_node(xas))
		xas_load(xas);
	node = xas->xa_node;
	if (!xas_on_node(xas))
		return NULL;
	if (!slot_load(node, xas->xa_offset) ||
	    xa_is_internal(slot_load(node, xas->xa_offset)))
		return NULL;
	return node;
}

bool xas_get_mark(struct xa_state *xas, xa_mark_t mark)
{
	struct xa_node *node = xas_entry_node(xas);

	return node && node_get_mark(node, xas->xa_offset, mark);
}

void xas_set_mark(struct xa_state *xas, xa_mark_t mark)
{
	struct xa_node *node;
	unsigned int i, sibs;

	XA_ASSERT_LOCKED(xas->xa);
	node = xas_entry_node(xas);
	if (!node)
		return;
	sibs = node_sibs(node, xas->xa_offset);
	for (i = xas->xa_offset; i <= xas->xa_offset + sibs; i++)
		node_set_mark(node, i, mark);
	mark_propagate_set(xas->xa, node, mark);
}

void xas_clear_mark(struct xa_state *xas, xa_mark_t mark)
{
	struct xa_node *node;
	unsigned int i, sibs;
	bool cleared = false;

	XA_ASSERT_LOCKED(xas->xa);
	node = xas_entry_node(xas);
	if (!node)
		return;
	sibs = node_sibs(node, xas->xa_offset);
	for (i = xas->xa_offset; i <= xas->xa_offset + sibs; i++)
		cleared |= node_clear_mark(node, i, mark);
	if (cleared)
		mark_propagate_clear(xas->xa, node, mark);
}

/* ---- Searching ---------------------------------------------------------- */

/*
 * First entry at or after xa_index (<= @max) with @mark, or any entry for
 * XA_PRESENT, starting in @node if it is given (a node the last search
 * ended in), from the top otherwise. An entry that covers xa_index counts,
 * and is reported at its first index, unless @cont says the search
 * continues an iteration: then only entries that begin at or after
 * xa_index count.
 */
static void *xas_find_from(struct xa_state *xas, unsigned long max,
			   xa_mark_t mark, struct xa_node *node, bool cont)
{
	unsigned long index;
	void *entry;

restart:
	index = xas->xa_index;
	if (index > max)
		goto out_bounds;
	if (!node) {
		entry = head_load(xas->xa);
		if (!entry)
			goto out_bounds;
		node = xa_to_node(entry);
		if (index > shift_max_index(node->shift))
			goto out_bounds;
	}

	for (;;) {
		unsigned int first = node_offset(index, node), offset = first;

		for (;;) {
			if (mark != XA_PRESENT)
				offset = node_next_mark(node, offset, mark);
			if (offset >= XA_CHUNK_SIZE)
				break;
			entry = slot_load(node, offset);
			/*
			 * A sibling at the first slot is the tail of an entry that
			 * covers the start: a fresh search returns it, one that
			 * continues an iteration has been past its head already.
			 */
			if (entry && (!xa_is_sibling(entry) ||
				      (offset == first && !cont)))
				break;
			offset++;
		}
		if (offset >= XA_CHUNK_SIZE) {
			/* Nothing left here: continue after this node's range. */
			unsigned long last = index | shift_max_index(node->shift);

			if (last == ULONG_MAX || last >= max)
				goto out_bounds;
			xas->xa_index = last + 1;
			node = NULL;
			goto restart;
		}
		if (offset != first)
			index = slot_base(node, index, offset);
		if (index > max)
			goto out_bounds;
		if (xa_is_sibling(entry)) {
			unsigned int canon = xa_to_sibling(entry);
			void *head = slot_load(node, canon);

			if (slot_load(node, offset) != entry || xa_is_internal(head)) {
				node = NULL;
				goto restart;
			}
			offset = canon;
			entry = head;
			index = slot_base(node, index, offset);
			if (!entry) {
				/* Being erased: look past it. */
				xas->xa_index = slot_base(node, index, first) +
						(1UL << node->shift);
				if (!xas->xa_index)
					goto out_bounds;
				node = NULL;
				goto restart;
			}
		}
		if (xa_is_retry(entry)) {
			xas->xa_index = index;
			node = NULL;
			goto restart;
		}
		if (xa_is_node(entry)) {
			node = xa_to_node(entry);
			continue;
		}
		xas->xa_node = node;
		xas->xa_offset = offset;
		xas->xa_index = slot_base(node, index, offset);
		/*
		 * Remember the span now: if the entry is split before the
		 * caller moves on, the iteration must still step past all of
		 * what it returned, not into the pieces.
		 */
		xas->xa_span = 1 + node->shift + ilog2_u(node_sibs(node, offset) + 1);
		return entry;
	}

out_bounds:
	xas->xa_node = XAS_BOUNDS;
	return NULL;
}

/*
 * Move the cursor past the entry it is on. Returns the node to continue in
 * (NULL: from the top), or XAS_BOUNDS when the entry ended the index space.
 */
static struct xa_node *xas_advance(struct xa_state *xas)
{
	struct xa_node *node = xas->xa_node;
	unsigned long start, next, span;
	unsigned int order;

	/* xa_index may be a tail index (after xas_load): start from the head. */
	start = slot_base(node, xas->xa_index, xas->xa_offset);
	if (xas->xa_span)
		order = xas->xa_span - 1;
	else
		order = node->shift + ilog2_u(node_sibs(node, xas->xa_offset) + 1);
	if (order >= (unsigned int)BITS_PER_LONG)
		return XAS_BOUNDS;
	span = 1UL << order;
	start &= ~(span - 1);
	next = start + span;
	xas->xa_span = 0;
	if (next == 0 || next < start)
		return XAS_BOUNDS;
	xas->xa_index = next;
	/* Stay in this node if the next slot is in it. */
	if (order < node->shift + (unsigned int)XA_CHUNK_SHIFT &&
	    ((next >> node->shift) & XA_CHUNK_MASK) != 0)
		return node;
	return NULL;
}

static void *xas_find_common(struct xa_state *xas, unsigned long max,
			     xa_mark_t mark)
{
	struct xa_node *node = xas->xa_node;
	bool cont = true;

	if (node == XAS_BOUNDS)
		return NULL;
	if (node == XAS_PAUSED) {
		node = NULL;
	} else if (!xas_on_node(xas)) {
		node = NULL;
		cont = false;
	} else {
		node = xas_advance(xas);
		if (node == XAS_BOUNDS) {
			xas->xa_node = XAS_BOUNDS;
			return NULL;
		}
	}
	return xas_find_from(xas, max, mark, node, cont);
}

void *xas_find(struct xa_state *xas, unsigned long max)
{
	return xas_find_common(xas, max, XA_PRESENT);
}

void *xas_find_marked(struct xa_state *xas, unsigned long max, xa_mark_t mark)
{
	BUG_ON(mark >= XA_MAX_MARKS);
	return xas_find_common(xas, max, mark);
}

void xas_pause(struct xa_state *xas)
{
	struct xa_node *node;

	if (!xas_on_node(xas))
		return;
	node = xas_advance(xas);
	xas->xa_node = node == XAS_BOUNDS ? XAS_BOUNDS : XAS_PAUSED;
}

/* ---- Splitting ---------------------------------------------------------- */

/* Nodes needed to split one entry of @order into entries of @new_order. */
static unsigned long split_nodes_needed(unsigned int order,
					unsigned int new_order)
{
	unsigned int level = order_level(order), new_level = order_level(new_order);
	unsigned long per_slot = 0, width = 1;

	if (new_level >= level)
		return 0;
	for (unsigned int l = level; l > new_level; l -= XA_CHUNK_SHIFT) {
		per_slot += width;
		if (width > (1UL << 24))
			return ULONG_MAX;
		width *= XA_CHUNK_SIZE;
	}
	return per_slot << (order - level);
}

int xas_split_alloc(struct xa_state *xas, unsigned int order)
{
	unsigned long need;

	if (xas->xa_order >= order || order > XA_MAX_ORDER)
		return -EINVAL;
	need = split_nodes_needed(order, xas->xa_order);
	if (need > (1UL << 20))
		return -ENOMEM;		/* would not fit in memory anyway */
	while (xas->xa_nr_alloc < need) {
		struct xa_node *node = xa_node_alloc();

		if (!node) {
			xas_destroy(xas);
			return -ENOMEM;
		}
		xas_push_node(xas, node);
	}
	xas->xa_need = need;
	return 0;
}

/*
 * A private subtree of level @shift whose every slot range of @new_order
 * holds @entry, with @marks (bit m: mark m) on every slot.
 */
static struct xa_node *split_subtree(struct xa_state *xas, struct xa_node *parent,
				     unsigned int offset, unsigned int shift,
				     unsigned int new_order, void *entry,
				     unsigned int marks)
{
	struct xa_node *node = xas_take_node(xas, parent, shift, offset);
	unsigned int i;

	if (shift == order_level(new_order)) {
		unsigned int piece = 1U << (new_order - shift);

		for (i = 0; i < XA_CHUNK_SIZE; i++)
			node->slots[i] = i % piece ? xa_mk_sibling(i - i % piece)
						   : entry;
	} else {
		for (i = 0; i < XA_CHUNK_SIZE; i++)
			node->slots[i] = xa_mk_node(split_subtree(xas, node, i,
					shift - XA_CHUNK_SHIFT, new_order, entry,
					marks));
	}
	node->count = XA_CHUNK_SIZE;
	for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
		if (marks & (1U << m))
			for (i = 0; i < XA_CHUNK_SIZE; i++)
				node_set_mark(node, i, m);
	return node;
}

int xas_split(struct xa_state *xas, void *entry, unsigned int order)
{
	unsigned int new_order = xas->xa_order;
	unsigned int level, new_level, offset, nslots, i;
	unsigned int marks = 0;
	struct xa_node *node;
	void *curr;

	XA_ASSERT_LOCKED(xas->xa);
	if (new_order >= order || order > XA_MAX_ORDER)
		return -EINVAL;
	/* Law 5: the allocation was made unlocked; is the entry still there? */
	curr = xas_load(xas);
	if (curr != entry || !curr || xas_get_order(xas) != order) {
		xas->xa_node = XAS_RESTART;
		return -EAGAIN;
	}
	if (xas->xa_nr_alloc < split_nodes_needed(order, new_order)) {
		xas->xa_node = XAS_RESTART;
		return -ENOMEM;
	}

	node = xas->xa_node;
	offset = xas->xa_offset;
	level = node->shift;
	new_level = order_level(new_order);
	nslots = 1U << (order - level);
	for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
		if (node_get_mark(node, offset, m))
			marks |= 1U << m;

	if (new_level >= level) {
		/* Regroup the run of slots; the first piece keeps its slots. */
		unsigned int piece = 1U << (new_order - level);

		for (i = nslots; i-- > piece;) {
			unsigned int slot = offset + i;

			if (i % piece == 0)
				slot_store(node, slot, entry);
		}
		/* Rule 2: new canonical slots above are written before siblings. */
		for (i = nslots; i-- > piece;) {
			unsigned int slot = offset + i;

			if (i % piece)
				slot_store(node, slot,
					   xa_mk_sibling(slot - i % piece));
		}
	} else {
		/* Each slot becomes a subtree; the canonical slot goes last. */
		for (i = nslots; i-- > 0;) {
			struct xa_node *child;

			child = split_subtree(xas, node, offset + i,
					      level - XA_CHUNK_SHIFT, new_order,
					      entry, marks);
			slot_store(node, offset + i, xa_mk_node(child));
		}
	}
	xas->xa_node = XAS_RESTART;
	return 0;
}

/* ---- The normal API ----------------------------------------------------- */

void *xa_load(struct xarray *xa, unsigned long index)
{
	XA_STATE(xas, xa, index);
	void *entry;

	fs_rcu_read_lock();
	entry = xas_load(&xas);
	fs_rcu_read_unlock();
	return entry;
}

void *xa_store_order(struct xarray *xa, unsigned long index,
		     unsigned int order, void *entry)
{
	struct xa_state xas = { .xa = xa };
	void *curr;

	if (order > XA_MAX_ORDER)
		return ERR_PTR(-EINVAL);
	xas_set_order(&xas, index, order);
	do {
		xa_lock(xa);
		curr = xas_store(&xas, entry);
		xa_unlock(xa);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	if (xas_error(&xas))
		return ERR_PTR(xas_error(&xas));
	return curr;
}

int xa_insert_order(struct xarray *xa, unsigned long index,
		    unsigned int order, void *entry)
{
	struct xa_state xas = { .xa = xa };
	unsigned long last;
	int err;

	if (!entry || xa_is_internal(entry) || order > XA_MAX_ORDER)
		return -EINVAL;
	xas_set_order(&xas, index, order);
	last = order < BITS_PER_LONG ? xas.xa_index + (1UL << order) - 1
				     : ULONG_MAX;
	do {
		xa_lock(xa);
		xas_set_order(&xas, index, order);
		if (xas_find(&xas, last)) {
			xas_set_err(&xas, -EBUSY);
		} else {
			xas_set_order(&xas, index, order);
			xas_store(&xas, entry);
		}
		xa_unlock(xa);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	err = xas_error(&xas);
	return err;
}

void *xa_erase(struct xarray *xa, unsigned long index)
{
	XA_STATE(xas, xa, index);
	void *entry;

	xa_lock(xa);
	entry = xas_store(&xas, NULL);
	xa_unlock(xa);
	return entry;
}

void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		 void *entry)
{
	XA_STATE(xas, xa, index);
	void *curr;

	if (xa_is_internal(entry))
		return ERR_PTR(-EINVAL);
	do {
		xa_lock(xa);
		xas_set(&xas, index);
		curr = xas_load(&xas);
		if (curr == old) {
			/* Keep a multi-index entry's order (and so its marks). */
			xas_set_order(&xas, index, curr ? xas_get_order(&xas) : 0);
			xas_store(&xas, entry);
		}
		xa_unlock(xa);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	if (xas_error(&xas))
		return ERR_PTR(xas_error(&xas));
	return curr;
}

void *xa_find(struct xarray *xa, unsigned long *indexp, unsigned long max,
	      xa_mark_t filter)
{
	XA_STATE(xas, xa, *indexp);
	void *entry;

	fs_rcu_read_lock();
	if (filter == XA_PRESENT)
		entry = xas_find(&xas, max);
	else
		entry = xas_find_marked(&xas, max, filter);
	fs_rcu_read_unlock();
	if (entry)
		*indexp = xas.xa_index;
	return entry;
}

void *xa_find_after(struct xarray *xa, unsigned long *indexp,
		    unsigned long max, xa_mark_t filter)
{
	XA_STATE(xas, xa, *indexp);
	unsigned long orig = *indexp;
	void *entry = NULL;

	fs_rcu_read_lock();
	/* Skip the whole entry covering *indexp, then search. */
	if (xas_load(&xas)) {
		xas_pause(&xas);
	} else {
		if (orig == ULONG_MAX)
			goto out;
		xas_set(&xas, orig + 1);
	}
	for (;;) {
		if (xas.xa_node == XAS_BOUNDS) {
			entry = NULL;
			break;
		}
		if (filter == XA_PRESENT)
			entry = xas_find(&xas, max);
		else
			entry = xas_find_marked(&xas, max, filter);
		/*
		 * A larger entry stored meanwhile may cover the start and begin
		 * at or before *indexp: iteration must not go backwards, so
		 * step over it.
		 */
		if (!entry || xas.xa_index > orig)
			break;
		xas_pause(&xas);
	}
out:
	fs_rcu_read_unlock();
	if (entry)
		*indexp = xas.xa_index;
	return entry;
}

void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	XA_STATE(xas, xa, index);

	BUG_ON(mark >= XA_MAX_MARKS);
	xa_lock(xa);
	xas_set_mark(&xas, mark);
	xa_unlock(xa);
}

void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	XA_STATE(xas, xa, index);

	BUG_ON(mark >= XA_MAX_MARKS);
	xa_lock(xa);
	xas_clear_mark(&xas, mark);
	xa_unlock(xa);
}

bool xa_get_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	XA_STATE(xas, xa, index);
	bool ret;

	BUG_ON(mark >= XA_MAX_MARKS);
	fs_rcu_read_lock();
	ret = xas_get_mark(&xas, mark);
	fs_rcu_read_unlock();
	return ret;
}

unsigned int xa_get_order(struct xarray *xa, unsigned long index)
{
	XA_STATE(xas, xa, index);
	unsigned int order;

	fs_rcu_read_lock();
	order = xas_get_order(&xas);
	fs_rcu_read_unlock();
	return order;
}

int xa_split(struct xarray *xa, unsigned long index, unsigned int new_order)
{
	struct xa_state xas = { .xa = xa };
	unsigned int order;
	void *entry;
	int err;

	for (;;) {
		xa_lock(xa);
		xas_set(&xas, index);
		entry = xas_load(&xas);
		order = entry ? xas_get_order(&xas) : 0;
		xa_unlock(xa);
		if (!entry)
			return -ENOENT;
		if (new_order >= order)
			return -EINVAL;

		xas_set_order(&xas, index, new_order);
		err = xas_split_alloc(&xas, order);
		if (err)
			return err;
		xa_lock(xa);
		err = xas_split(&xas, entry, order);
		xa_unlock(xa);
		xas_destroy(&xas);
		if (err != -EAGAIN)
			return err;
	}
}

unsigned long xa_convert_marks(struct xarray *xa, unsigned long start,
			       unsigned long last, xa_mark_t from,
			       xa_mark_t to, unsigned int batch)
{
	XA_STATE(xas, xa, start);
	unsigned long tagged = 0;
	unsigned int done = 0;
	void *entry;

	BUG_ON(from >= XA_MAX_MARKS || to >= XA_MAX_MARKS);
	if (!batch)
		batch = 1;
	xa_lock(xa);
	xas_for_each_marked(&xas, entry, last, from) {
		xas_set_mark(&xas, to);
		tagged++;
		if (++done == batch) {
			/* Let writers in; continue after this entry. */
			done = 0;
			xas_pause(&xas);
			xa_unlock(xa);
			xa_lock(xa);
		}
	}
	xa_unlock(xa);
	return tagged;
}

void xa_destroy(struct xarray *xa)
{
	void *head;

	xa_lock(xa);
	head = xa->xa_head;
	head_store(xa, NULL);
	__atomic_store_n(&xa->xa_marks, 0, __ATOMIC_RELAXED);
	if (head)
		xa_free_subtree(xa_to_node(head));
	xa_unlock(xa);
}

/* ---- Checking ----------------------------------------------------------- */

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "xa_check: node %p shift %u: ",		\
			(void *)node, node->shift);			\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		return false;						\
	}								\
} while (0)

static bool check_node(struct xarray *xa, struct xa_node *node,
		       unsigned long *nodes)
{
	unsigned int count = 0;

	(*nodes)++;
	CHECK(node->array == xa, "belongs to another tree");
	for (unsigned int i = 0; i < XA_CHUNK_SIZE; i++) {
		void *entry = node->slots[i];

		if (entry)
			count++;
		if (xa_is_sibling(entry)) {
			unsigned int canon = xa_to_sibling(entry);
			void *head = node->slots[canon];

			CHECK(canon < i, "slot %u: sibling names %u", i, canon);
			CHECK(head && !xa_is_internal(head),
			      "slot %u: sibling of a non-entry", i);
			CHECK(i == canon + 1 || node->slots[i - 1] == entry,
			      "slot %u: gap in sibling run", i);
		} else if (xa_is_node(entry)) {
			struct xa_node *child = xa_to_node(entry);

			CHECK(child->parent == node && child->offset == i &&
			      child->shift + XA_CHUNK_SHIFT == node->shift,
			      "slot %u: child links wrong", i);
			CHECK(child->count > 0, "slot %u: empty child", i);
			for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
				CHECK(node_get_mark(node, i, m) ==
				      node_any_mark(child, m),
				      "slot %u: mark %u not propagated", i, m);
			if (!check_node(xa, child, nodes))
				return false;
		} else if (xa_is_internal(entry)) {
			CHECK(false, "slot %u: stray internal entry %p", i, entry);
		} else if (entry) {
			unsigned int sibs = node_sibs(node, i);

			CHECK(((sibs + 1) & sibs) == 0 && i % (sibs + 1) == 0,
			      "slot %u: misaligned multi-index entry", i);
			for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
				for (unsigned int j = 1; j <= sibs; j++)
					CHECK(node_get_mark(node, i + j, m) ==
					      node_get_mark(node, i, m),
					      "slot %u: mark %u differs on sibling",
					      i, m);
		}
		if (!entry)
			for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
				CHECK(!node_get_mark(node, i, m),
				      "slot %u: mark %u on empty slot", i, m);
	}
	CHECK(count == node->count, "count %u, slots in use %u",
	      node->count, count);
	return true;
}

bool xa_check(struct xarray *xa)
{
	unsigned long nodes = 0;
	struct xa_node *node;
	bool ok;

	xa_lock(xa);
	if (!xa->xa_head) {
		ok = xa->xa_marks == 0;
		if (!ok)
			fprintf(stderr, "xa_check: empty tree has root marks\n");
		goto out;
	}
	node = xa_to_node(xa->xa_head);
	ok = node->parent == NULL && node->count > 0;
	if (!ok) {
		fprintf(stderr, "xa_check: bad root\n");
		goto out;
	}
	for (xa_mark_t m = 0; m < XA_MAX_MARKS && ok; m++) {
		ok = !!(xa->xa_marks & (1U << m)) == node_any_mark(node, m);
		if (!ok)
			fprintf(stderr, "xa_check: root mark %u wrong\n", m);
	}
	if (ok)
		ok = check_node(xa, node, &nodes);
out:
	xa_unlock(xa);
	return ok;
}

static unsigned long count_nodes(struct xa_node *node)
{
	unsigned long n = 1;

	for (unsigned int i = 0; i < XA_CHUNK_SIZE; i++)
		if (xa_is_node(node->slots[i]))
			n += count_nodes(xa_to_node(node->slots[i]));
	return n;
}

unsigned long xa_node_bytes(struct xarray *xa)
{
	unsigned long n = 0;

	xa_lock(xa);
	if (xa->xa_head)
		n = count_nodes(xa_to_node(xa->xa_head));
	xa_unlock(xa);
	return n * XA_NODE_ALLOC_SIZE;
}
