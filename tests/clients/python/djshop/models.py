"""A small shop for the Django test: foreign keys, many-to-many, decimals, JSON, UUIDs."""

import uuid

from django.db import models


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    class Meta:
        app_label = "djshop"


class Customer(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True)
    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    meta = models.JSONField(default=dict)
    credit = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "djshop"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=20, default="new", db_index=True)
    tags = models.ManyToManyField(Tag, blank=True)

    class Meta:
        app_label = "djshop"
