// SPDX-License-Identifier: GPL-2.0
// shmbell: a minimal guest kernel module for bench/shm.sh. It binds an ivshmem device
// (1af4:1110), enables MSI-X vector 0 and lets user space wait for its interrupts:
// /dev/shmbell's read() blocks until a doorbell arrived that this open file has not seen and
// returns the count so far (4 bytes). Debian's uio_pci_generic handles INTx only, and QEMU's
// ivshmem-doorbell interrupts only through MSI-X: this is how both VMMs are measured on the
// same path. Built against Debian's linux-headers for the guest kernel (bench/shm.sh).
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

static struct pci_dev *bell_dev;
static atomic_t bell_count = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(bell_wait);

static irqreturn_t bell_irq(int irq, void *data)
{
	atomic_inc(&bell_count);
	wake_up_interruptible(&bell_wait);
	return IRQ_HANDLED;
}

static int bell_open(struct inode *inode, struct file *f)
{
	int *seen = kmalloc(sizeof(*seen), GFP_KERNEL);

	if (!seen)
		return -ENOMEM;
	*seen = atomic_read(&bell_count);
	f->private_data = seen;
	return 0;
}

static int bell_release(struct inode *inode, struct file *f)
{
	kfree(f->private_data);
	return 0;
}

static ssize_t bell_read(struct file *f, char __user *buf, size_t len, loff_t *off)
{
	int *seen = f->private_data;
	u32 now;

	if (len < sizeof(now))
		return -EINVAL;
	if (wait_event_interruptible(bell_wait, atomic_read(&bell_count) != *seen))
		return -ERESTARTSYS;
	now = atomic_read(&bell_count);
	*seen = now;
	if (copy_to_user(buf, &now, sizeof(now)))
		return -EFAULT;
	return sizeof(now);
}

static const struct file_operations bell_fops = {
	.owner = THIS_MODULE,
	.open = bell_open,
	.release = bell_release,
	.read = bell_read,
};

static struct miscdevice bell_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "shmbell",
	.fops = &bell_fops,
};

static int bell_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	int err;

	if (bell_dev)
		return -EBUSY;
	err = pcim_enable_device(pdev);
	if (err)
		return err;
	pci_set_master(pdev);
	err = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX);
	if (err < 0)
		return err;
	err = request_irq(pci_irq_vector(pdev, 0), bell_irq, 0, "shmbell", pdev);
	if (err) {
		pci_free_irq_vectors(pdev);
		return err;
	}
	bell_dev = pdev;
	return 0;
}

static void bell_remove(struct pci_dev *pdev)
{
	free_irq(pci_irq_vector(pdev, 0), pdev);
	pci_free_irq_vectors(pdev);
	bell_dev = NULL;
}

static const struct pci_device_id bell_ids[] = {
	{ PCI_DEVICE(0x1af4, 0x1110) },
	{}
};
MODULE_DEVICE_TABLE(pci, bell_ids);

static struct pci_driver bell_driver = {
	.name = "shmbell",
	.id_table = bell_ids,
	.probe = bell_probe,
	.remove = bell_remove,
};

static int __init bell_init(void)
{
	int err = misc_register(&bell_misc);

	if (err)
		return err;
	err = pci_register_driver(&bell_driver);
	if (err)
		misc_deregister(&bell_misc);
	return err;
}

static void __exit bell_exit(void)
{
	pci_unregister_driver(&bell_driver);
	misc_deregister(&bell_misc);
}

module_init(bell_init);
module_exit(bell_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ivshmem MSI-X doorbells to user space, for vireo's bench/shm.sh");
