import torch


def test_device_batches_serve_what_the_data_loader_serves(cifar_dir):
    from ghostmixnet.data.cifar import load_cifar10
    from ghostmixnet.data.loading import DeviceBatches, ImageDataset, ResumableSampler

    data = load_cifar10(cifar_dir, train=True)
    sampler = ResumableSampler(len(data), seed=3)
    sampler.set_epoch(2, start=20)  # part-way through an epoch, as a resumed run starts
    loader = torch.utils.data.DataLoader(ImageDataset(data, None), batch_size=16, sampler=sampler)
    expected = list(loader)
    served = list(DeviceBatches(data, sampler, 16, torch.device("cpu")))
    assert len(served) == len(expected) == len(DeviceBatches(data, sampler, 16, torch.device("cpu")))
    for (images, labels), (want_images, want_labels) in zip(served, expected):
        assert images.dtype == torch.uint8 and images.shape == want_images.shape
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_each_use_of_randomness_has_its_own_seed_stream():
    from ghostmixnet.data.loading import SEED_BATCH_AUGMENT, SEED_IMAGE_AUGMENT, SEED_STEP, mix_seed

    for i in range(50):
        image, step = mix_seed(SEED_IMAGE_AUGMENT, 0, 1, i), mix_seed(SEED_STEP, 0, 1, i, 0)
        assert len({image, step, mix_seed(SEED_BATCH_AUGMENT, 0, 1, i, 0)}) == 3
    assert mix_seed(SEED_STEP, 0, 1, 2, 0) == mix_seed(SEED_STEP, 0, 1, 2, 0)  # and each stream is reproducible
